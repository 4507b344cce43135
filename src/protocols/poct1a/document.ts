/**
 * One POCT1-A document (as the splitter cut it) → a message: its root, the `HDR` fields every
 * message carries (research note §4.2: message_type, control_id, version_id, creation_dttm) and
 * the element tree, parsed by `fast-xml-parser` with every element as an array (repeated elements
 * such as `OBS`, `NTE` and `DSC.topics_supported_cd` are the rule in POCT1-A, not the exception).
 *
 * Values sit in the `V` attribute; some devices put them in the element's text instead (Nova's
 * `<DEV.device_id V="">MGH^ICU</DEV.device_id>`), so `value()` reads `V` and falls back to the
 * text. A DOCTYPE never reaches here (the splitter refuses it); entity processing is still limited
 * to the five XML entities and character references.
 */
import { XMLParser } from 'fast-xml-parser';

/** An element as parsed: attributes under `@_name`, text under `#text`, children by name (arrays). */
export type XmlNode = { readonly [key: string]: unknown };

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  isArray: (_name: string, _path: unknown, _leaf: boolean, isAttribute: boolean) => !isAttribute,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  alwaysCreateTextNode: true,
  processEntities: true,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

/** The child elements named `name`, in document order. */
export function elements(node: XmlNode | null | undefined, name: string): XmlNode[] {
  const v = node?.[name];
  if (!Array.isArray(v)) return [];
  return v.map((x) => (typeof x === 'object' && x !== null ? (x as XmlNode) : { '#text': String(x) }));
}

/** The first child element named `name`, or null. */
export function element(node: XmlNode | null | undefined, name: string): XmlNode | null {
  return elements(node, name)[0] ?? null;
}

/** An attribute of an element, or null when absent. */
export function attribute(node: XmlNode | null | undefined, name: string): string | null {
  const v = node?.[`@_${name}`];
  return typeof v === 'string' ? v : null;
}

/** An element's value: its `V` attribute, else its text; trimmed; null when both are empty. */
export function valueOf(node: XmlNode | null | undefined): string | null {
  if (!node) return null;
  const v = attribute(node, 'V')?.trim() ?? '';
  if (v !== '') return v;
  const t = typeof node['#text'] === 'string' ? (node['#text'] as string).trim() : '';
  return t === '' ? null : t;
}

/** The value of the first child named `name` (`value(dev, 'DEV.device_id')`). */
export function value(node: XmlNode | null | undefined, name: string): string | null {
  return valueOf(element(node, name));
}

/** The values of every child named `name` (`DSC.topics_supported_cd`). */
export function values(node: XmlNode | null | undefined, name: string): string[] {
  return elements(node, name)
    .map(valueOf)
    .filter((v): v is string => v !== null);
}

export interface Poct1aHeader {
  /** `HDR.message_type` as sent (some tools put the wrong one; the root name wins). */
  messageType: string | null;
  controlId: string | null;
  versionId: string | null;
  /** `HDR.creation_dttm` as sent (ISO 8601, normally with an offset). */
  creationTime: string | null;
}

export interface Poct1aMessage {
  /** The root element's name, upper-cased as POCT1-A spells them (`OBS.R01`). */
  root: string;
  header: Poct1aHeader;
  /** The root element. */
  body: XmlNode;
  bytes: Buffer;
}

export type ParseOutcome = { ok: true; message: Poct1aMessage } | { ok: false; reason: string };

/** Decodes one document's bytes (UTF-8, the POCT1-A encoding) and reads its header. Never throws. */
export function parseDocument(bytes: Buffer): ParseOutcome {
  let tree: XmlNode;
  try {
    tree = parser.parse(bytes.toString('utf8')) as XmlNode;
  } catch (err) {
    return { ok: false, reason: `not well-formed XML: ${(err as Error).message}` };
  }
  const roots = Object.keys(tree).filter((k) => !k.startsWith('?') && !k.startsWith('#'));
  if (roots.length !== 1) return { ok: false, reason: `expected one root element, found ${roots.length}` };
  const rootName = roots[0]!;
  const body = element(tree, rootName)!;
  const hdr = element(body, 'HDR');
  return {
    ok: true,
    message: {
      root: rootName,
      header: {
        messageType: value(hdr, 'HDR.message_type'),
        controlId: value(hdr, 'HDR.control_id'),
        versionId: value(hdr, 'HDR.version_id'),
        creationTime: value(hdr, 'HDR.creation_dttm'),
      },
      body,
      bytes,
    },
  };
}
