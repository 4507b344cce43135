/**
 * ZPL rendered offline to PNG, for previews and tests: `zpl-renderer-js` (MIT) wraps the Zebrash
 * renderer compiled to WASM and needs no network (label data never leaves the site). It is an
 * optional dependency loaded on first use, so a daemon that never previews never loads its 9 MB.
 * It draws a subset of ZPL and its own fonts: a preview shows the layout and a barcode that scans,
 * not proof that a printer's fonts hold every glyph (README: fonts for CJK names).
 */

export interface LabelSize {
  width_mm: number;
  height_mm: number;
  dpmm: number;
}

type Renderer = (zpl: string, widthMm: number, heightMm: number, dpmm: number) => Promise<string[]>;

let renderer: Promise<Renderer> | undefined;

async function loadRenderer(): Promise<Renderer> {
  try {
    const mod = (await import('zpl-renderer-js')) as unknown as { ready: Promise<{ api: { zplToBase64MultipleAsync: Renderer } }> };
    const { api } = await mod.ready;
    return (zpl, w, h, d) => api.zplToBase64MultipleAsync(zpl, w, h, d);
  } catch (error) {
    renderer = undefined;
    throw new Error(`label preview needs the optional package zpl-renderer-js: ${(error as Error).message}`);
  }
}

/** Every label format in `zpl` as a PNG (one per `^XA … ^XZ`; `^PQ` copies are not repeated). */
export async function renderZplPng(zpl: string, size: LabelSize): Promise<Buffer[]> {
  renderer ??= loadRenderer();
  const render = await renderer;
  const images = await render(zpl, size.width_mm, size.height_mm, size.dpmm);
  return images.map((b64) => Buffer.from(b64, 'base64'));
}
