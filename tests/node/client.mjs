// The Node fhir-kit-client against a live gateway: node client.mjs BASE_URL [ACCESS_TOKEN]
// Prints one JSON object of what it saw; tests/test_node_client.py checks it.
import { Client } from 'fhir-kit-client';

const client = new Client({ baseUrl: process.argv[2], bearerToken: process.argv[3] });
const out = {};

const capability = await client.capabilityStatement();
out.fhirVersion = capability.fhirVersion;

const created = await client.create({
  resourceType: 'Patient', body: { resourceType: 'Patient', gender: 'female', identifier: [{ system: 'urn:node', value: 'N-1' }] },
});
out.createdId = created.id;
const read = await client.read({ resourceType: 'Patient', id: created.id });
out.readGender = read.gender;
const updated = await client.update({ resourceType: 'Patient', id: created.id, body: { ...read, gender: 'male' } });
out.updatedVersion = updated.meta.versionId;

for (let i = 0; i < 23; i += 1) {
  await client.create({ resourceType: 'Observation', body: {
    resourceType: 'Observation', status: 'final', code: { text: 'node' }, subject: { reference: `Patient/${created.id}` },
  } });
}
let page = await client.search({ resourceType: 'Observation', searchParams: { subject: `Patient/${created.id}`, _count: 5 } });
out.total = page.total;
const ids = page.entry.map((e) => e.resource.id);
while (page.link.some((l) => l.relation === 'next')) {
  page = await client.nextPage({ bundle: page });
  ids.push(...(page.entry || []).map((e) => e.resource.id));
}
out.paged = ids.length;
out.pagedDistinct = new Set(ids).size;

const included = await client.search({ resourceType: 'Observation', searchParams: {
  subject: `Patient/${created.id}`, _include: 'Observation:subject', _count: 3,
} });
out.includeModes = [...new Set(included.entry.map((e) => e.search.mode))].sort();

const tx = await client.transaction({ body: {
  resourceType: 'Bundle', type: 'transaction', entry: [
    { fullUrl: 'urn:uuid:11111111-2222-3333-4444-555555555555', resource: { resourceType: 'Patient', gender: 'other' },
      request: { method: 'POST', url: 'Patient' } },
    { resource: { resourceType: 'Observation', status: 'final', code: { text: 'tx' },
                  subject: { reference: 'urn:uuid:11111111-2222-3333-4444-555555555555' } },
      request: { method: 'POST', url: 'Observation' } },
  ],
} });
out.transactionType = tx.type;
out.transactionStatuses = tx.entry.map((e) => e.response.status);
out.transactionSubject = tx.entry[1].resource.subject.reference;
out.transactionPatient = tx.entry[0].response.location.split('/').slice(0, 2).join('/');

try {
  await client.read({ resourceType: 'Patient', id: 'no-such-patient' });
} catch (error) {
  out.missingStatus = error.response.status;
  out.missingType = error.response.data.resourceType;
}
console.log(JSON.stringify(out));
