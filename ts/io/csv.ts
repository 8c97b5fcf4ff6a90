// CSV (RFC 4180): fields holding commas, quotes or newlines are quoted.

/** RFC 4180 fields: quotes around fields holding commas, quotes or newlines. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') field += '"', i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(field), field = '';
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field), rows.push(row), row = [], field = '';
    } else field += ch;
  }
  if (field !== '' || row.length > 0) row.push(field), rows.push(row);
  return rows.filter((r) => r.length > 1 || r[0] !== '');
}

const quote = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** Rows of fields (numbers as their decimal text) to CSV text, ending in a newline. */
export function formatCsv(rows: readonly (readonly (string | number)[])[]): string {
  return rows.map((r) => r.map((x) => quote(String(x))).join(',')).join('\n') + '\n';
}
