// urql against the server at TOLLGATE_URL: fetchExchange behind the
// persisted-queries exchange for queries and mutations, and its
// subscriptionExchange over graphql-ws.
//
// Same environment as apollo.mjs: MEMBER_TOKEN, KEY_SECRET, ORG_ID.
// Prints one REPORT line with what the client saw.
import { Client, cacheExchange, fetchExchange, gql, subscriptionExchange } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { ORGANIZATION, RECORD, USAGE, recordingFetch, settings, sleep } from './shared.mjs';

const { httpUrl, wsUrl, organizationId } = settings;

const errorsOf = (error) =>
  (error?.graphQLErrors ?? []).map((e) => ({ message: e.message, code: e.extensions?.code, path: e.path }));

function client(token, requests = []) {
  const authorization = `Bearer ${token}`;
  const ws = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: authorization },
    lazy: true,
  });
  return new Client({
    url: httpUrl,
    fetch: recordingFetch(requests),
    fetchOptions: () => ({ headers: { authorization } }),
    requestPolicy: 'network-only',
    exchanges: [
      cacheExchange,
      persistedExchange({ preferGetForPersistedQueries: true }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              return { unsubscribe: ws.subscribe(input, sink) };
            },
          };
        },
      }),
    ],
  });
}

const report = {};
const requests = [];
const member = client(settings.memberToken, requests);

// A query whose role-gated field fails, sent by hash first.
const gated = await member.query(gql(ORGANIZATION), { id: organizationId }).toPromise();
report.gated = { data: gated.data ?? null, errors: errorsOf(gated.error) };
report.requests = requests;

// The subscription over graphql-ws, fed by mutations of the key.
let received = null;
const listening = member.subscription(gql(USAGE), { organizationId }).subscribe((result) => {
  received ??= result;
});
const key = client(settings.keySecret);
for (let attempt = 0; attempt < 60 && !received; attempt += 1) {
  const recorded = await key
    .mutation(gql(RECORD), { input: { model: 'gpt-4o-mini', promptTokens: 20, completionTokens: 2 } })
    .toPromise();
  report.mutation ??= { data: recorded.data ?? null, errors: errorsOf(recorded.error) };
  await sleep(500);
}
listening.unsubscribe();
report.subscription = received ? { data: received.data ?? null, errors: errorsOf(received.error) } : null;

console.log(`REPORT ${JSON.stringify(report)}`);
process.exit(0);
