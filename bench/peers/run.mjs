// The fumifier side of bench/peers: node run.mjs MAPPING.jsonata ROWS.csv OUT.ndjson
// Compiles the mapping once, then reads the CSV, evaluates the mapping per row (plain JSONata
// mode: no FHIR navigator, so nothing is validated) and writes NDJSON. Prints, as JSON, the rows,
// the resources and the seconds from reading the file to the last line written.
import fs from 'node:fs';
import fumifier from 'fumifier';

const [, , mappingPath, csvPath, outPath] = process.argv;
const expression = await fumifier(fs.readFileSync(mappingPath, 'utf8'));
const started = performance.now();
const lines = fs.readFileSync(csvPath, 'utf8').split('\n');
const header = lines[0].split(',');
const out = fs.openSync(outPath, 'w');
let rows = 0;
let resources = 0;
let chunk = [];
for (let i = 1; i < lines.length; i++) {
  if (!lines[i]) continue;
  const cells = lines[i].split(',');  // the generated rows have no quoted cells
  const row = {};
  for (let c = 0; c < header.length; c++) row[header[c]] = cells[c] ?? '';
  let made = await expression.evaluate(row);
  if (made === undefined) made = [];
  if (!Array.isArray(made)) made = [made];
  rows += 1;
  resources += made.length;
  for (const resource of made) chunk.push(JSON.stringify(resource));
  if (chunk.length >= 2000) {
    fs.writeSync(out, chunk.join('\n') + '\n');
    chunk = [];
  }
}
if (chunk.length) fs.writeSync(out, chunk.join('\n') + '\n');
fs.closeSync(out);
console.log(JSON.stringify({ rows, resources, seconds: (performance.now() - started) / 1000 }));
