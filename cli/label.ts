/**
 * `poctd label --template specimen --data FILE.json [--png out.png] [--zpl out.zpl|-]`: the label
 * a print request would make, without a printer or a daemon. The data file is a print request's
 * body (as sent to `request/print`, `transaction` aside); `--template` overrides its template.
 * With `--config FILE --device-id ID` the device's own templates are known too. No specimen id is
 * issued here (that needs the daemon's store): a request without one shows PREVIEW in its place.
 * Exit 1 with the problem named by field (`patient.dob: not a date`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { labelRequestProblems, renderLabel, type LabelRequest } from '../drivers/printers/zebra-zpl/label.ts';
import { zebraOptions } from '../drivers/printers/zebra-zpl/session.ts';
import { BUILTIN_TEMPLATES } from '../drivers/printers/zebra-zpl/templates.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { renderZplPng } from '../src/protocols/zpl/render.ts';
import { UsageError } from './command-line.ts';

export async function label(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      template: { type: 'string', short: 't' },
      data: { type: 'string' },
      png: { type: 'string' },
      zpl: { type: 'string' },
      config: { type: 'string', short: 'c' },
      'device-id': { type: 'string' },
    },
  });
  if (!values.data) throw new UsageError('label needs --data FILE.json (a print request body; - for stdin)');
  if (!values.png && !values.zpl) throw new UsageError('label needs --png FILE and/or --zpl FILE|-');
  let templates = BUILTIN_TEMPLATES;
  if (values.config) {
    const config = loadConfigFile(values.config);
    const device = config.devices.find((d) => d.id === values['device-id']);
    if (!device) throw new UsageError(`label --config needs the --device-id of a configured printer (${config.devices.map((d) => d.id).join(', ') || 'none configured'})`);
    templates = zebraOptions(device).templates;
  }
  let body: unknown;
  try {
    body = JSON.parse(readFileSync(values.data === '-' ? 0 : values.data, 'utf8'));
  } catch (error) {
    process.stderr.write(`poctd label: ${values.data}: ${(error as Error).message}\n`);
    return 1;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    process.stderr.write(`poctd label: ${values.data}: must hold a JSON object (a print request)\n`);
    return 1;
  }
  const { transaction: _t, requested_by: _r, ...params } = body as Record<string, unknown>;
  if (values.template) params.template = values.template;
  const problems = labelRequestProblems(params, templates, new Date());
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`poctd label: ${p}\n`);
    return 1;
  }
  const request = params as unknown as LabelRequest;
  const template = templates[request.template]!;
  const { zpl, cut } = renderLabel(request, template, request.specimen_id ?? 'PREVIEW');
  for (const field of cut) process.stderr.write(`poctd label: ${field} was cut to fit the label\n`);
  if (values.zpl === '-') process.stdout.write(zpl);
  else if (values.zpl) writeFileSync(values.zpl, zpl);
  if (values.png) {
    const [png] = await renderZplPng(zpl, template);
    writeFileSync(values.png, png!);
  }
  return 0;
}
