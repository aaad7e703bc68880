// Apollo Client 4 with InMemoryCache against the server at TOLLGATE_URL,
// as a web app would set it up: HTTP for queries and mutations (behind
// the persisted-queries link), GraphQLWsLink for subscriptions.
//
// MEMBER_TOKEN reads ORG_ID (a MEMBER, who may not read its audit log);
// KEY_SECRET (USAGE_WRITE) reports usage while the member's subscription
// listens. Prints one REPORT line with what the client saw, the requests
// it sent for persisted queries, and every warning or error it logged.
import { createHash } from 'node:crypto';
import { format } from 'node:util';

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { loadDevMessages, loadErrorMessages } from '@apollo/client/dev';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { ORGANIZATION, RECORD, USAGE, recordingFetch, settings, sleep } from './shared.mjs';

const { httpUrl, wsUrl, memberToken, keySecret, organizationId } = settings;

// Apollo's own words instead of links to them, and every one of them kept.
loadDevMessages();
loadErrorMessages();
const logged = [];
for (const level of ['warn', 'error']) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    logged.push(`${level}: ${format(...args)}`);
    original(...args);
  };
}

const sha256 = (text) => createHash('sha256').update(text).digest('hex');
const errorsOf = (error) =>
  (error?.errors ?? []).map((e) => ({ message: e.message, code: e.extensions?.code, path: e.path }));

function client({ token, requests = [] }) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const http = new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri: httpUrl, headers, fetch: recordingFetch(requests) }),
  );
  const ws = new GraphQLWsLink(
    createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: headers, lazy: true }),
  );
  const link = ApolloLink.split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
    },
    ws,
    http,
  );
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

const report = {};
const member = client({ token: memberToken });

// 1. A query whose role-gated field fails.
const gated = await member.query({
  query: gql(ORGANIZATION),
  variables: { id: organizationId },
  errorPolicy: 'all',
  fetchPolicy: 'network-only',
});
report.gated = { data: gated.data ?? null, errors: errorsOf(gated.error) };
report.cached = member.readQuery({ query: gql(ORGANIZATION), variables: { id: organizationId } }) ?? null;

// 2. A subscription through GraphQLWsLink, fed by 3. mutations.
const key = client({ token: keySecret });
const firstEvent = new Promise((resolve, reject) => {
  const subscription = member.subscribe({ query: gql(USAGE), variables: { organizationId } }).subscribe({
    next(result) {
      subscription.unsubscribe();
      resolve(result);
    },
    error: reject,
  });
});
let received = null;
firstEvent.then((result) => (received = result));
// The server starts listening a moment after subscribe: report until the
// subscription hears one.
for (let attempt = 0; attempt < 60 && !received; attempt += 1) {
  const recorded = await key.mutate({
    mutation: gql(RECORD),
    variables: { input: { model: 'gpt-4o-mini', promptTokens: 10, completionTokens: 5 } },
  });
  report.mutation ??= { data: recorded.data ?? null, errors: errorsOf(recorded.error) };
  await Promise.race([firstEvent, sleep(500)]);
}
report.subscription = received ? { data: received.data ?? null, errors: errorsOf(received.error) } : null;

// 4. Automatic persisted queries: a first client registers the document
// after PersistedQueryNotFound, a second one (its own cache) names it by
// hash only.
const PLANS = gql`
  query Plans {
    plans {
      key
    }
  }
`;
report.apq = [];
for (let round = 0; round < 2; round += 1) {
  const requests = [];
  const result = await client({ requests }).query({ query: PLANS, fetchPolicy: 'network-only' });
  report.apq.push({ requests, data: result.data ?? null, errors: errorsOf(result.error) });
}

report.logged = logged;
console.log(`REPORT ${JSON.stringify(report)}`);
await member.stop?.();
process.exit(0);
