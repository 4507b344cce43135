// The poctd dashboard: plain ES modules, preact + htm, mqtt.js's browser build (MQTT 3.1.1 over
// WebSocket), uPlot. No build step. The topic map and the role table come from the daemon
// (api/topics.json, the same TOPIC_SCHEMAS and roleRules it uses), so the page has no copy.
import { h, render } from '../vendor/preact.mjs';
import { useEffect, useMemo, useRef, useState } from '../vendor/preact-hooks.mjs';
import htm from '../vendor/htm.mjs';
import mqtt from '../vendor/mqtt.esm.js';
import uPlot from '../vendor/uplot.mjs';

const html = htm.bind(h);
const MAX_RESULTS = 300;
const MAX_EVENTS = 150;
/** Statuses that need someone to look (shown first, with the offline devices). */
const ATTENTION = new Set(['fault', 'error', 'no-answer', 'port-missing', 'unplugged', 'unsupported']);
const DEVICE_ACTIONS = [
  { verb: 'download', label: 'Download', kinds: ['glucose-meter', 'urinalysis-reader'] },
  { verb: 'clock/sync', label: 'Sync clock', kinds: ['glucose-meter', 'urinalysis-reader', 'analyzer', 'label-printer'] },
];

/** MQTT filter matching, `+` one level and `#` the rest. */
export function filterMatches(filter, topic) {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** What the user's roles grant, from the daemon's role table (null roles: an external broker decides). */
function grants(map, roles) {
  if (!roles) {
    const all = Object.values(map.roles);
    return { read: [...new Set(all.flatMap((r) => [...r.read, ...r.readRedacted]))], publish: [...new Set(all.flatMap((r) => r.publish))], redacted: false };
  }
  const rules = roles.map((r) => map.roles[r]);
  const read = new Set(rules.flatMap((r) => r.read));
  const redactedOnly = rules.flatMap((r) => r.readRedacted).filter((f) => !read.has(f));
  return { read: [...read, ...redactedOnly], publish: [...new Set(rules.flatMap((r) => r.publish))], redacted: redactedOnly.length > 0 };
}

function brokerUrl(map) {
  const u = new URL(map.broker, location.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.toString();
}

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function fmtSkew(s) {
  if (s === null || s === undefined) return '—';
  const a = Math.abs(s);
  const txt = a < 120 ? `${Math.round(s)} s` : a < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
  return s > 0 ? `+${txt}` : txt;
}

/** The measured value as the device gave it: HI/LO with the device's limit, never a made-up number. */
function Value({ obs }) {
  const flags = obs.flags ?? [];
  const hi = flags.includes('HI');
  const lo = flags.includes('LO');
  if (hi || lo) {
    const limit = obs.limit ?? null;
    return html`<span class="limit" data-limit=${hi ? 'HI' : 'LO'}>${hi ? 'HI' : 'LO'}${limit !== null ? ` (${hi ? '>' : '<'} ${limit} ${obs.unit ?? ''})` : ''}</span>`;
  }
  if (obs.value === null || obs.value === undefined) return html`<span>${obs.text ?? '—'}</span>`;
  return html`<span>${obs.comparator ?? ''}${obs.value} ${obs.unit ?? ''}${obs.text && obs.text !== String(obs.value) ? html` <span class="muted">(${obs.text})</span>` : ''}</span>`;
}

function CategoryBadge({ category }) {
  // A record without a category is not a patient result either.
  const label = category === 'patient' ? 'patient' : `${String(category ?? 'uncategorised').toUpperCase()} — not a patient result`;
  return html`<span class=${`cat cat-${category}`} data-category=${category}>${label}</span>`;
}

function ResultsView({ results, redacted }) {
  return html`<section class="wide" id="results">
    <h2>Results (live)</h2>
    ${redacted ? html`<p class="muted">Your role sees results without patient ids.</p>` : null}
    <table>
      <thead><tr><th>Observed</th><th>Device</th><th>Category</th><th>Result</th><th>Flags</th><th>Patient</th><th>Specimen</th></tr></thead>
      <tbody>
        ${results.map(
          (r) => html`<tr key=${r.id} data-result=${r.id} data-seq=${r.seq} class=${r.category === 'patient' ? 'patient' : 'not-patient'}>
            <td>${fmtTime(r.observed_at)}</td>
            <td>${r.device?.id}</td>
            <td><${CategoryBadge} category=${r.category} /></td>
            <td>${(r.observations ?? []).map((o) => html`<div>${o.name ?? o.code}: <${Value} obs=${o} /></div>`)}</td>
            <td>${[...(r.flags ?? []), ...(r.observations ?? []).flatMap((o) => (o.flags ?? []).filter((f) => f !== 'HI' && f !== 'LO'))].map((f) => html`<span class="flag">${f}</span>`)}</td>
            <td>${r.patient?.id ?? html`<span class="muted">—</span>`}</td>
            <td>${r.specimen?.id ?? html`<span class="muted">—</span>`}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${results.length === 0 ? html`<p class="muted">No results yet.</p>` : null}
  </section>`;
}

function printerFaults(state) {
  const p = state?.printer;
  if (!p) return [];
  return ['paper_out', 'ribbon_out', 'head_open', 'paused', 'receive_buffer_full', 'over_temperature', 'under_temperature', 'corrupt_ram'].filter((k) => p[k] === true);
}

function DevicesView({ devices, progress, may, act, selected, select, openPrint, jobs, request }) {
  // A printer with a fault or a job nobody knows printed needs someone as much as a faulted meter.
  const needsAttention = (d) =>
    ATTENTION.has(d.state?.status) || printerFaults(d.state).length > 0 || Object.values(jobs).some((j) => j.device === d.id && j.state === 'uncertain');
  const rows = [...devices].sort((a, b) => {
    const rank = (d) => (d.availability !== 'online' ? 0 : needsAttention(d) ? 1 : 2);
    return rank(a) - rank(b) || a.id.localeCompare(b.id);
  });
  return html`<section class="wide" id="devices">
    <h2>Devices</h2>
    <table>
      <thead><tr><th>Device</th><th>Model</th><th>Serial</th><th>Availability</th><th>Status</th><th>Clock skew</th><th>Last download</th><th>Faults</th><th>Progress / jobs</th><th>Actions</th></tr></thead>
      <tbody>
        ${rows.map((d) => {
          const s = d.state ?? {};
          const faults = printerFaults(s);
          const attention = d.availability !== 'online' || needsAttention(d);
          const p = progress[d.id];
          const actions = DEVICE_ACTIONS.filter((a) => (!s.kind || a.kinds.includes(s.kind)) && may(`device/${d.id}/request/${a.verb}`));
          return html`<tr key=${d.id} data-device=${d.id} class=${attention ? 'attention' : ''}>
            <td><a href="#" onClick=${(e) => { e.preventDefault(); select(d.id); }} aria-current=${selected === d.id}>${d.id}</a></td>
            <td>${s.manufacturer ?? d.vendor} ${s.model ?? d.model ?? ''}</td>
            <td>${s.serial ?? d.serial ?? '—'}</td>
            <td><span class=${`pill ${d.availability}`} data-availability=${d.availability}>${d.availability}</span></td>
            <td><span class=${`pill status-${s.status}`} data-status=${s.status ?? ''}>${s.status ?? '—'}</span>${s.status_detail ? html` <span class="muted">${s.status_detail}</span>` : null}</td>
            <td class=${s.clock_skew_flagged ? 'limit' : ''}>${fmtSkew(s.clock_skew_s)}</td>
            <td>${fmtTime(s.last_download)}</td>
            <td>${faults.length ? faults.map((f) => html`<span class="flag">${f.replace(/_/g, ' ')}</span>`) : html`<span class="muted">—</span>`}</td>
            <td>${p ? html`<progress data-progress=${d.id} max=${p.total ?? ''} value=${p.received}></progress> <span class="muted">${p.message}</span>` : null}
              ${s.kind === 'label-printer' ? html`<${PrinterQueue} device=${d.id} queued=${s.printer?.queued_jobs ?? 0} jobs=${jobs} request=${request} may=${may} />` : null}</td>
            <td>${actions.map((a) => html`<button data-action=${a.verb} onClick=${() => act(d.id, a.verb)}>${a.label}</button> `)}
              ${s.kind === 'label-printer' && may(`device/${d.id}/request/print`) ? html`<button data-action="label" onClick=${() => openPrint(d.id)}>Print label…</button>` : null}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}

/** The built-in label templates (drivers/printers/zebra-zpl/templates.ts); a site's own are typed in. */
const LABEL_TEMPLATES = ['specimen', 'specimen-300', 'tube-wrap'];
const OPEN_JOB_STATES = new Set(['queued', 'printing', 'uncertain']);
const LABEL_FIELDS = ['template', 'specimen_id', 'patient.name', 'patient.mrn', 'patient.dob', 'collected_at', 'tests', 'copies'];

/** `2026-12-03T09:14` from a datetime-local input, with this browser's offset: `2026-12-03T09:14:00+01:00`. */
function withOffset(local) {
  const d = new Date(local);
  if (Number.isNaN(d.getTime())) return local;
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const a = Math.abs(off);
  return `${local.length === 16 ? `${local}:00` : local}${sign}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

function nowLocal() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * An error answer cut into its `field: reason` parts (the daemon names the field: `patient.dob: not
 * a date`); a part naming no form field stays a general error.
 */
export function fieldErrors(error, verb) {
  const fields = {};
  const general = [];
  const text = String(error ?? '').replace(new RegExp(`^${verb}: `), '');
  for (const part of text.split('; ')) {
    const m = /^([A-Za-z_][\w.]*)(?:\[\d+\])?: (.+)$/s.exec(part);
    const field = m && LABEL_FIELDS.includes(m[1]) ? m[1] : null;
    if (field) fields[field] = fields[field] ? `${fields[field]}; ${m[2]}` : m[2];
    else if (part) general.push(part);
  }
  return { fields, general };
}

function JobLine({ job, request, device }) {
  const [busy, setBusy] = useState(false);
  const settle = async (printed) => {
    setBusy(true);
    await request(device, 'confirm', { job: job.job, printed });
    setBusy(false);
  };
  return html`<li data-job=${job.job} data-job-state=${job.state}>
    <span class=${`pill job-${job.state}`}>${job.state}</span> ${job.specimen_id ?? ''}${job.reprint_of ? html` <span class="flag">REPRINT</span>` : null}
    ${job.reason ? html` <span class="muted" data-job-reason>${job.reason}</span>` : null}
    ${job.state === 'uncertain' && request
      ? html` <button disabled=${busy} data-confirm="printed" onClick=${() => settle(true)}>It printed</button>
          <button disabled=${busy} data-confirm="reprint" onClick=${() => settle(false)}>Not printed: reprint</button>`
      : null}
    ${job.state === 'queued' && request ? html` <button disabled=${busy} data-cancel onClick=${() => request(device, 'cancel', { job: job.job })}>Cancel</button>` : null}
  </li>`;
}

/** A printer's open jobs (queued, printing, uncertain) as the job topic and `request/jobs` tell them. */
function PrinterQueue({ device, queued, jobs, request, may }) {
  const open = Object.values(jobs).filter((j) => j.device === device && OPEN_JOB_STATES.has(j.state));
  return html`<div data-queue=${device}><span data-queued=${queued}>${queued} queued</span>
    ${open.length ? html`<ul class="jobs">${open.map((j) => html`<${JobLine} key=${j.job} job=${j} request=${may(`device/${device}/request/confirm`) ? request : null} device=${device} />`)}</ul>` : null}</div>`;
}

/** A specimen label: the form, its preview as the printer would make it, and the jobs it started. */
function PrintPanel({ device, request, jobs, close }) {
  const [form, setForm] = useState({ template: 'specimen', specimen_id: '', 'patient.name': '', 'patient.mrn': '', 'patient.dob': '', collected_at: nowLocal(), tests: '', copies: '1' });
  const [errors, setErrors] = useState({ fields: {}, general: [] });
  const [preview, setPreview] = useState(null);
  const [mine, setMine] = useState([]);
  const [busy, setBusy] = useState(null);
  const set = (k) => (e) => setForm((f) => ({ ...f, [k]: e.target.value }));
  const params = () => {
    const p = { template: form.template.trim(), patient: { name: form['patient.name'], mrn: form['patient.mrn'] } };
    if (form['patient.dob']) p.patient.dob = form['patient.dob'];
    if (form.specimen_id.trim()) p.specimen_id = form.specimen_id.trim();
    if (form.collected_at) p.collected_at = withOffset(form.collected_at);
    const tests = form.tests.split(/[,\s]+/).filter(Boolean);
    if (tests.length) p.tests = tests;
    if (form.copies !== '') p.copies = Number(form.copies);
    return p;
  };
  const send = async (verb) => {
    setBusy(verb);
    setErrors({ fields: {}, general: [] });
    const res = await request(device, verb, params());
    setBusy(null);
    if (res.status !== 'ok') return setErrors(fieldErrors(res.error, verb));
    if (verb === 'preview') setPreview(res.data);
    else setMine((m) => [res.data.job, ...m.filter((j) => j !== res.data.job)]);
    return undefined;
  };
  const field = (k, label, input) => html`<label class=${errors.fields[k] ? 'bad' : ''}>${label} ${input}
    ${errors.fields[k] ? html`<span class="field-error" data-field-error=${k}>${errors.fields[k]}</span>` : null}</label>`;
  const shown = mine.map((id) => jobs[id] ?? { job: id, state: 'queued', reason: null });
  // A reprint is a job of its own: shown under the uncertain one it replaces.
  const reprints = Object.values(jobs).filter((j) => j.reprint_of && mine.includes(j.reprint_of) && !mine.includes(j.job));
  return html`<section class="wide" id="print" data-print=${device}>
    <h2>Print a specimen label on ${device} <button class="close" onClick=${close}>Close</button></h2>
    <div class="print">
      <form class="label-form" onSubmit=${(e) => { e.preventDefault(); send('print'); }}>
        ${field('template', 'Template', html`<input name="template" list="label-templates" value=${form.template} onInput=${set('template')} />
          <datalist id="label-templates">${LABEL_TEMPLATES.map((t) => html`<option value=${t} />`)}</datalist>`)}
        ${field('specimen_id', 'Specimen id', html`<input name="specimen_id" placeholder="issued by poctd when empty" value=${form.specimen_id} onInput=${set('specimen_id')} />`)}
        ${field('patient.name', 'Patient name', html`<input name="patient.name" autocomplete="off" value=${form['patient.name']} onInput=${set('patient.name')} />`)}
        ${field('patient.mrn', 'MRN', html`<input name="patient.mrn" autocomplete="off" value=${form['patient.mrn']} onInput=${set('patient.mrn')} />`)}
        ${field('patient.dob', 'Date of birth', html`<input name="patient.dob" placeholder="YYYY-MM-DD" autocomplete="off" value=${form['patient.dob']} onInput=${set('patient.dob')} />`)}
        ${field('collected_at', 'Collected at', html`<input name="collected_at" type="datetime-local" value=${form.collected_at} onInput=${set('collected_at')} />`)}
        ${field('tests', 'Tests', html`<input name="tests" placeholder="GLU, UA" value=${form.tests} onInput=${set('tests')} />`)}
        ${field('copies', 'Copies', html`<input name="copies" type="number" min="1" value=${form.copies} onInput=${set('copies')} />`)}
        ${errors.general.length ? html`<p class="error" role="alert" data-print-error>${errors.general.join('; ')}</p>` : null}
        <div class="buttons">
          <button type="button" data-label-action="preview" disabled=${busy !== null} onClick=${() => send('preview')}>Preview</button>
          <button type="submit" data-label-action="print" disabled=${busy !== null}>Print</button>
        </div>
      </form>
      <div class="preview">
        ${preview
          ? html`<img data-preview alt="label preview" src=${`data:image/png;base64,${preview.png}`} />
              <p class="muted">${preview.width_mm} × ${preview.height_mm} mm at ${preview.dpmm} dots/mm${preview.cut?.length ? html` · <span class="limit">cut to fit: ${preview.cut.join(', ')}</span>` : null}</p>`
          : html`<p class="muted">Preview shows the label as the printer would print it; nothing is printed.</p>`}
      </div>
    </div>
    ${shown.length ? html`<h3>Jobs from this page</h3><ul class="jobs">${[...shown, ...reprints].map((j) => html`<${JobLine} key=${j.job} job=${j} request=${request} device=${device} />`)}</ul>` : null}
  </section>`;
}

/** Imaging studies (ultrasound): what was received and its measurements; pixel data never comes here. */
function StudiesView({ studies, redacted }) {
  const list = Object.values(studies).sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0));
  const patient = (p) => {
    const parts = [['name', p?.name], ['id', p?.id], ['born', p?.birth_date]].filter(([, v]) => v);
    return parts.length ? parts.map(([k, v]) => `${k} ${v}`).join(' · ') : null;
  };
  return html`<section class="wide" id="studies">
    <h2>Studies (ultrasound)</h2>
    ${redacted ? html`<p class="muted">Your role sees studies without patient fields.</p>` : null}
    ${list.length === 0 ? html`<p class="muted">No studies yet.</p>` : null}
    ${list.map(
      (st) => html`<article key=${st.study_key} class="study" data-study=${st.study_key} data-version=${st.version}>
        <h3>${st.study?.description ?? 'Study'} <span class="muted">${(st.study?.modalities ?? []).join(', ')} · ${st.device?.id} · ${fmtTime(st.study?.started_at ?? st.received_at)}</span></h3>
        <p>Patient: <span data-study-patient>${patient(st.patient) ?? html`<span class="muted">—</span>`}</span>
          ${' · '}accession ${st.study?.accession_number ?? '—'} · ${st.series?.length ?? 0} series, ${st.instances} instances, ${st.frames} frames, ${st.reports?.length ?? 0} reports
          ${st.version > 1 ? html` · <span class="flag">version ${st.version}</span>` : null}
          ${(st.flags ?? []).map((f) => html` <span class="flag">${f}</span>`)}</p>
        ${(st.measurements ?? []).length
          ? html`<table class="measurements"><thead><tr><th>Measurement</th><th>Value</th><th>Context</th><th>Derivation</th></tr></thead><tbody>
              ${st.measurements.map(
                (m, i) => html`<tr key=${i} data-measurement=${m.code}>
                  <td>${m.meaning}${m.loinc ? html` <span class="muted">LOINC ${m.loinc}</span>` : null}</td>
                  <td>${m.value !== null ? `${m.value} ${m.unit ?? m.ucum ?? ''}` : (m.text ?? '—')}</td>
                  <td class="muted">${[...(m.path ?? []), m.fetus ? `fetus ${m.fetus}` : null, m.finding_site?.meaning, m.laterality?.meaning].filter(Boolean).join(' › ')}</td>
                  <td class="muted">${[m.derivation, m.equation, m.selection].filter(Boolean).join(', ')}</td>
                </tr>`,
              )}</tbody></table>`
          : html`<p class="muted">No measurements (images only).</p>`}
      </article>`,
    )}
  </section>`;
}

function EventsView({ events }) {
  const bad = new Set(['download_failed', 'bad_frame', 'no_answer', 'port_missing', 'mqtt_error', 'config_error', 'device_error', 'listener_refused']);
  return html`<section id="events"><h2>Events</h2><ul class="events">
    ${events.map((e, i) => html`<li key=${i} class=${bad.has(e.type) ? 'error' : ''} data-event=${e.type}><span class="muted">${fmtTime(e.at)}</span> ${e.device ?? 'bridge'} · ${e.type}: ${e.message}</li>`)}
  </ul></section>`;
}

function HealthView({ health, bridgeState, connection }) {
  return html`<section id="health"><h2>Bridge</h2><dl class="health">
    <dt>Bridge</dt><dd><span class=${`pill ${bridgeState ?? 'offline'}`} data-bridge=${bridgeState ?? ''}>${bridgeState ?? 'unknown'}</span></dd>
    <dt>Dashboard ↔ broker</dt><dd data-connection=${connection.state}>${connection.state}</dd>
    ${health
      ? html`<dt>Outbox depth</dt><dd data-outbox=${health.outbox_depth}>${health.outbox_depth}</dd>
          <dt>Records stored / published</dt><dd>${health.records.stored} / ${health.records.published} (${health.records.duplicates} duplicates)</dd>
          <dt>Errors</dt><dd>${health.errors}</dd>
          <dt>Daemon ↔ broker</dt><dd>${health.mqtt.connected ? 'connected' : 'disconnected'}, ${health.mqtt.reconnects} reconnects</dd>
          <dt>Uptime</dt><dd>${Math.round(health.uptime_s / 60)} min</dd>
          <dt>As of</dt><dd>${fmtTime(health.at)}</dd>`
      : html`<dd class="muted">no health report yet</dd>`}
  </dl></section>`;
}

/** Recent numeric results of one device, patient and control/QC as separate series (QC trends). */
function ChartView({ device, results }) {
  const ref = useRef(null);
  const data = useMemo(() => {
    const points = results
      .filter((r) => r.device?.id === device)
      .map((r) => {
        const o = (r.observations ?? []).find((x) => typeof x.value === 'number');
        return o ? { t: Date.parse(r.observed_at) / 1000, v: o.value, patient: r.category === 'patient', unit: o.unit, name: o.name ?? o.code } : null;
      })
      .filter((p) => p && Number.isFinite(p.t))
      .sort((a, b) => a.t - b.t);
    return points;
  }, [device, results]);
  useEffect(() => {
    if (!ref.current || data.length === 0) return undefined;
    const plot = new uPlot(
      {
        width: Math.max(300, ref.current.clientWidth - 10),
        height: 220,
        series: [{}, { label: `patient (${data[0].unit ?? ''})`, stroke: '#0b3d91', points: { show: true } }, { label: 'control / QC', stroke: '#5b2a86', points: { show: true }, dash: [4, 4] }],
        // One point alone would get a range of years around it: an hour either side instead.
        scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 3600, max + 3600] : [min, max]) } },
      },
      [data.map((p) => p.t), data.map((p) => (p.patient ? p.v : null)), data.map((p) => (p.patient ? null : p.v))],
      ref.current,
    );
    return () => plot.destroy();
  }, [data]);
  return html`<section class="wide" id="chart"><h2>Recent results: ${device ?? 'choose a device'}</h2>
    ${device && data.length === 0 ? html`<p class="muted">No numeric results for this device yet.</p>` : null}
    <div ref=${ref} data-chart=${device ?? ''} data-points=${data.length}></div></section>`;
}

function Login({ onLogin, error }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  return html`<form class="login" onSubmit=${(e) => { e.preventDefault(); onLogin(username, password); }}>
    <h2>poctd dashboard</h2>
    <label>User <input name="username" autocomplete="username" value=${username} onInput=${(e) => setUsername(e.target.value)} /></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" value=${password} onInput=${(e) => setPassword(e.target.value)} /></label>
    ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    <button type="submit">Log in</button>
  </form>`;
}

function Dashboard({ map, session, logout }) {
  const base = map.base_topic;
  const g = useMemo(() => grants(map, session.roles), [map, session]);
  const may = (rel) => g.publish.some((f) => filterMatches(f, rel));
  const [connection, setConnection] = useState({ state: 'connecting' });
  const [devices, setDevices] = useState({});
  const [states, setStates] = useState({});
  const [availability, setAvailability] = useState({});
  const [results, setResults] = useState([]);
  const [events, setEvents] = useState([]);
  const [health, setHealth] = useState(null);
  const [bridgeState, setBridgeState] = useState(null);
  const [progress, setProgress] = useState({});
  const [toast, setToast] = useState(null);
  const [selected, setSelected] = useState(null);
  const [jobs, setJobs] = useState({});
  const [studies, setStudies] = useState({});
  const [printing, setPrinting] = useState(null);
  const clientRef = useRef(null);
  /** Requests from the page waiting for their answer, by transaction. */
  const pending = useRef(new Map());
  const lastSeq = useRef(0);

  useEffect(() => {
    const client = mqtt.connect(brokerUrl(map), {
      username: session.username,
      password: session.password,
      protocolVersion: 4,
      clientId: `dashboard-${session.username}-${Math.random().toString(16).slice(2, 10)}`,
      reconnectPeriod: 2000,
      connectTimeout: 8000,
      clean: true,
    });
    clientRef.current = client;
    const seen = new Set();
    const replayTransaction = `dash-replay-${Math.random().toString(16).slice(2, 10)}`;
    const replay = (c, since) => c.publish(`${base}/bridge/request/results/replay`, JSON.stringify({ since_seq: since, transaction: replayTransaction }), { qos: 1 });
    client.on('connect', () => {
      setConnection({ state: 'online' });
      // Only what the roles can read: a refused subscription would fail the whole SUBSCRIBE.
      for (const f of g.read) client.subscribe(`${base}/${f}`, { qos: 1 }, () => undefined);
      // Catch up on results missed while away (a role that may replay; the others see new ones).
      if (may('bridge/request/results/replay')) {
        replay(client, lastSeq.current);
      }
    });
    client.on('close', () => setConnection((c) => (c.state === 'refused' ? c : { state: 'lost' })));
    client.on('offline', () => setConnection((c) => (c.state === 'refused' ? c : { state: 'lost' })));
    client.on('error', (e) => {
      if (e && (e.code === 4 || e.code === 5)) setConnection({ state: 'refused', reason: e.message });
    });
    client.on('message', (topic, payload) => {
      if (!topic.startsWith(`${base}/`)) return;
      const rel = topic.slice(base.length + 1);
      let body;
      try {
        body = JSON.parse(new TextDecoder().decode(payload));
      } catch {
        return;
      }
      const parts = rel.split('/');
      // Every record kind counts for the catch-up (a replay sends them all), not only results.
      if (parts[0] === 'device' && parts.length === 3 && typeof body?.seq === 'number' && typeof body?.schema === 'string' && body.seq > lastSeq.current) lastSeq.current = body.seq;
      if (rel === 'bridge/devices') setDevices(Object.fromEntries(body.map((d) => [d.id, d])));
      else if (rel === 'bridge/health') setHealth(body);
      else if (rel === 'bridge/state') setBridgeState(body.state);
      else if (rel === 'bridge/response/results/replay') {
        // One replay answers at most a page of records: ask on from where it stopped.
        if (body.transaction === replayTransaction && body.status === 'ok' && body.data?.more) replay(client, body.data.last_seq);
        return;
      } else if (rel === 'bridge/event') {
        setEvents((list) => [body, ...list].slice(0, MAX_EVENTS));
        if (body.device && body.type.startsWith('download_')) {
          setProgress((p) => {
            const next = { ...p };
            if (body.type === 'download_progress') next[body.device] = { received: body.data?.received ?? 0, total: body.data?.total ?? null, message: body.message };
            else if (body.type === 'download_started') next[body.device] = { received: 0, total: null, message: body.message };
            else next[body.device] = { received: 1, total: 1, message: body.message };
            return next;
          });
        }
      } else if (parts[0] === 'device' && parts.length === 2) setStates((s) => ({ ...s, [parts[1]]: body }));
      else if (parts[0] === 'device' && parts[2] === 'availability') setAvailability((a) => ({ ...a, [parts[1]]: body.state }));
      else if (parts[0] === 'device' && parts[2] === 'response') {
        const waiting = pending.current.get(body.transaction);
        if (waiting) {
          pending.current.delete(body.transaction);
          waiting(body);
          if (body.status === 'ok') return;
        }
        setToast({ error: body.status !== 'ok', text: `${parts[1]} ${parts.slice(3).join('/')}: ${body.status}${body.error ? ` — ${body.error}` : ''}` });
      } else if (parts[0] === 'device' && parts.length === 3 && body && typeof body.schema === 'string' && body.schema.startsWith('poct.print-job/')) {
        // Steps of one job arrive in order; a replayed older step never moves a job back.
        setJobs((j) => (j[body.job] && (j[body.job].seq ?? 0) > body.seq ? j : { ...j, [body.job]: { ...body, device: body.device?.id } }));
      } else if (parts[0] === 'device' && parts.length === 3 && body && typeof body.schema === 'string' && body.schema.startsWith('poct.study/')) {
        // One study per study_key: a later version (more instances arrived) replaces the earlier.
        setStudies((st) => (st[body.study_key] && st[body.study_key].version > body.version ? st : { ...st, [body.study_key]: body }));
      } else if (parts[0] === 'device' && parts.length === 3 && body && typeof body.schema === 'string' && body.schema.startsWith('poct.result/') && body.id) {
        // Other record kinds (studies, print jobs) have no observations to show here.
        if (seen.has(body.id)) return;
        if (seen.size > 20 * MAX_RESULTS) seen.clear();
        seen.add(body.id);
        setResults((list) => [body, ...list].sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0)).slice(0, MAX_RESULTS));
      }
    });
    return () => client.end(true);
  }, [map, session]);

  useEffect(() => {
    if (!toast) return undefined;
    const t = setTimeout(() => setToast(null), 6000);
    return () => clearTimeout(t);
  }, [toast]);

  const act = (device, verb) => {
    const client = clientRef.current;
    if (!client) return;
    client.publish(`${base}/device/${device}/request/${verb}`, JSON.stringify({ transaction: `dash-${Date.now()}`, requested_by: session.username }), { qos: 1 });
    setToast({ error: false, text: `${device}: ${verb} requested` });
  };

  /** A device request whose answer comes back to the caller (a print form's field errors, a preview's PNG). */
  const request = (device, verb, params) =>
    new Promise((resolve) => {
      const client = clientRef.current;
      if (!client) return resolve({ status: 'error', data: null, error: 'not connected to the broker' });
      const transaction = `dash-${verb.replace(/\W/g, '-')}-${Date.now()}-${Math.random().toString(16).slice(2, 8)}`;
      const timer = setTimeout(() => {
        pending.current.delete(transaction);
        resolve({ status: 'error', data: null, error: `no answer from ${device} within 20 s` });
      }, 20_000);
      pending.current.set(transaction, (body) => {
        clearTimeout(timer);
        resolve(body);
      });
      client.publish(`${base}/device/${device}/request/${verb}`, JSON.stringify({ ...params, transaction, requested_by: session.username }), { qos: 1 });
    });

  // A printer's open jobs as the daemon keeps them (the job topic is not retained): asked once per
  // printer and connection; the job topic's steps take over from there.
  const askedJobs = useRef(new Set());
  useEffect(() => {
    if (connection.state !== 'online') {
      askedJobs.current.clear();
      return;
    }
    for (const [id, st] of Object.entries(states)) {
      if (st?.kind !== 'label-printer' || askedJobs.current.has(id) || !may(`device/${id}/request/jobs`)) continue;
      askedJobs.current.add(id);
      request(id, 'jobs', { open: true }).then((res) => {
        if (res.status !== 'ok') return;
        setJobs((j) => {
          const next = { ...j };
          for (const v of res.data.jobs ?? []) if (!next[v.job]) next[v.job] = { ...v, device: id, seq: 0 };
          return next;
        });
      });
    }
  }, [states, connection]);

  const list = Object.keys({ ...devices, ...states }).map((id) => ({
    id,
    ...(devices[id] ?? {}),
    availability: availability[id] ?? devices[id]?.availability ?? 'offline',
    state: states[id],
  }));
  const chartDevice = selected ?? list[0]?.id ?? null;

  return html`<div>
    <header><h1>poctd · ${map.site}</h1><span class="who" data-user=${session.username}>${session.username} (${(session.roles ?? ['broker decides']).join(', ')})</span><button onClick=${logout}>Log out</button></header>
    ${connection.state === 'online' ? null : html`<div class=${`banner ${connection.state === 'connecting' ? 'connecting' : 'lost'}`} role="status" data-banner=${connection.state}>
      ${connection.state === 'connecting' ? 'Connecting to the broker…' : connection.state === 'refused' ? `The broker refused this login (${connection.reason}).` : 'Connection to the broker lost — what is shown may be out of date; reconnecting…'}
    </div>`}
    <main>
      <${DevicesView} devices=${list} progress=${progress} may=${may} act=${act} selected=${chartDevice} select=${setSelected} openPrint=${setPrinting} jobs=${jobs} request=${request} />
      ${printing && may(`device/${printing}/request/print`) ? html`<${PrintPanel} key=${printing} device=${printing} request=${request} jobs=${jobs} close=${() => setPrinting(null)} />` : null}
      <${ResultsView} results=${results} redacted=${g.redacted} />
      <${ChartView} device=${chartDevice} results=${results} />
      ${Object.keys(studies).length || list.some((d) => d.state?.kind === 'ultrasound') ? html`<${StudiesView} studies=${studies} redacted=${g.redacted} />` : null}
      <${EventsView} events=${events} />
      <${HealthView} health=${health} bridgeState=${bridgeState} connection=${connection} />
    </main>
    ${toast ? html`<div class=${`toast ${toast.error ? 'error' : ''}`} role="status" data-toast>${toast.text}</div>` : null}
  </div>`;
}

function App({ map }) {
  const [session, setSession] = useState(null);
  const [error, setError] = useState(null);
  const login = async (username, password) => {
    setError(null);
    const res = await fetch('api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    if (res.status === 401) return setError('Wrong user name or password.');
    if (!res.ok) return setError(`Login failed (${res.status}).`);
    const body = await res.json();
    setSession({ username, password, roles: body.roles });
  };
  if (!map.broker) return html`<p class="login">This daemon uses an external broker and no <code>http.broker_url</code> is set: the page has nothing to connect to.</p>`;
  return session ? html`<${Dashboard} map=${map} session=${session} logout=${() => setSession(null)} />` : html`<${Login} onLogin=${login} error=${error} />`;
}

const map = await fetch('api/topics.json').then((r) => r.json());
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} map=${map} />`, root);
