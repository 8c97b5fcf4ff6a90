// Escaping shared by every HTML and SVG writer (the FALCON report, the bar
// charts, the atlas), so text from captions, file names and vocabularies can
// never break out of an element or a quoted attribute.

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** `s` safe as HTML or SVG element text and as a quoted attribute value. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ENTITIES[c]);
}
