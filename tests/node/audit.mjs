// The GraphQL-over-HTTP audit of graphql-http (serverAudits) against the
// server at TOLLGATE_URL. Prints one REPORT line: every audit's id, name,
// status (ok, error for a failed MUST, warn for a SHOULD, notice for a
// MAY) and reason.
import { serverAudits } from 'graphql-http';

const url = `${process.env.TOLLGATE_URL}/graphql`;
const results = [];
// One at a time: the machine that runs the tests is small.
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  results.push({ id: result.id, name: result.name, status: result.status, reason: result.reason ?? null });
}
console.log(`REPORT ${JSON.stringify({ results })}`);
