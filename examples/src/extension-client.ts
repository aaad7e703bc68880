// What an editor extension (or a CLI) does with Tollgate, start to finish:
//
//   1. device login: show the person a code, let them approve it in a
//      browser, poll until a session arrives;
//   2. make sure the person has verified their email address (the server
//      gives API keys only to verified accounts), then create an API key
//      for the organization, once (an extension keeps its secret in the
//      editor's secret storage);
//   3. for every LLM call: ask authorizeUsage first, make the call, report
//      it with recordUsage (a requestId makes retries safe);
//   4. or, when the server runs the LLM gateway (clientConfig.llmBaseUrl
//      is set), call the model through it with the same key: the server
//      holds the provider's key and meters the call itself;
//   5. watch the organization's usage live over graphql-ws, as a dashboard
//      or a status-bar item would.
//
// Run it against a server (`cargo run` serves on port 8000):
//
//   npm ci && npm run build
//   TOLLGATE_URL=http://127.0.0.1:8000 node dist/extension-client.js
//
// Environment: TOLLGATE_URL (the server), TOLLGATE_CLIENT_NAME (shown on
// the approval page), TOLLGATE_ORGANIZATION_ID (default: your personal
// organization), TOLLGATE_CALLS (simulated LLM calls, default 5),
// TOLLGATE_MODEL (the model called through the gateway, default
// gpt-4o-mini).

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

const serverUrl = (process.env.TOLLGATE_URL ?? 'http://127.0.0.1:8000').replace(/\/$/, '');
const graphqlUrl = `${serverUrl}/graphql`;
const websocketUrl = graphqlUrl.replace(/^http/, 'ws');
const clientName = process.env.TOLLGATE_CLIENT_NAME ?? `Example extension on ${hostname()}`;
const calls = Number(process.env.TOLLGATE_CALLS ?? 5);
const gatewayModel = process.env.TOLLGATE_MODEL ?? 'gpt-4o-mini';

// ---------------------------------------------------------------- GraphQL

/** A GraphQL error as Tollgate sends it: every one carries a code. */
interface GraphQLErrorBody {
  message: string;
  extensions?: { code?: string; retryAfter?: number; field?: string };
}

class TollgateError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(`${code}: ${message}`);
  }
}

/** One operation over HTTP; throws TollgateError with the first error's code. */
async function graphql<TData, TVariables extends object = Record<string, never>>(
  query: string,
  variables: TVariables,
  token?: string,
): Promise<TData> {
  const response = await fetch(graphqlUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: TData | null; errors?: GraphQLErrorBody[] };
  const error = body.errors?.[0];
  if (error) {
    throw new TollgateError(error.extensions?.code ?? 'INTERNAL', error.message, error.extensions?.retryAfter);
  }
  if (!body.data) throw new TollgateError('INTERNAL', `HTTP ${response.status} without data`);
  return body.data;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ----------------------------------------------------------- device login

interface AuthPayload {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

interface DeviceLogin {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string;
  expiresIn: number;
  interval: number;
}

async function deviceLogin(): Promise<AuthPayload> {
  const { startDeviceLogin: login } = await graphql<{ startDeviceLogin: DeviceLogin }, { clientName: string }>(
    `mutation ($clientName: String) {
      startDeviceLogin(clientName: $clientName) {
        deviceCode userCode verificationUri verificationUriComplete expiresIn interval
      }
    }`,
    { clientName },
  );
  console.log(`To sign in, open ${login.verificationUriComplete}`);
  console.log(`and check that it shows this code. user code: ${login.userCode}`);

  let interval = login.interval;
  const deadline = Date.now() + login.expiresIn * 1000;
  while (Date.now() < deadline) {
    await sleep(interval * 1000);
    try {
      const { pollDeviceLogin } = await graphql<{ pollDeviceLogin: AuthPayload }, { deviceCode: string }>(
        `mutation ($deviceCode: String!) {
          pollDeviceLogin(deviceCode: $deviceCode) { accessToken refreshToken expiresIn }
        }`,
        { deviceCode: login.deviceCode },
      );
      return pollDeviceLogin;
    } catch (error) {
      if (!(error instanceof TollgateError)) throw error;
      if (error.code === 'AUTHORIZATION_PENDING') continue;
      if (error.code === 'SLOW_DOWN') {
        interval += 5;
        continue;
      }
      if (error.code === 'RATE_LIMITED') {
        await sleep((error.retryAfter ?? interval) * 1000);
        continue;
      }
      throw error; // ACCESS_DENIED, EXPIRED_TOKEN
    }
  }
  throw new TollgateError('EXPIRED_TOKEN', 'the code expired before it was approved');
}

// ---------------------------------------------------------------- API key

/**
 * API keys are only for accounts that proved their email address
 * (FORBIDDEN "verify your email first" otherwise): anyone can sign up with
 * someone else's address. Asks the person to follow the link of the
 * verification email, and waits until they have.
 */
async function ensureVerified(accessToken: string): Promise<void> {
  const check = async () => {
    const { me } = await graphql<{ me: { email: string; emailVerified: boolean } }>(
      `{ me { email emailVerified } }`,
      {},
      accessToken,
    );
    return me;
  };
  let me = await check();
  if (me.emailVerified) return;
  try {
    await graphql<{ resendVerificationEmail: boolean }>(`mutation { resendVerificationEmail }`, {}, accessToken);
  } catch (error) {
    // Sent less than a minute ago already: the first email still works.
    if (!(error instanceof TollgateError && error.code === 'RATE_LIMITED')) throw error;
  }
  console.log(`Please verify your email first: open the link we sent to ${me.email}. Waiting...`);
  const deadline = Date.now() + 15 * 60 * 1000;
  while (!me.emailVerified) {
    if (Date.now() > deadline) throw new TollgateError('FORBIDDEN', 'verify your email first');
    await sleep(2000);
    me = await check();
  }
  console.log('email verified');
}

interface Organization {
  id: string;
  name: string;
  personal: boolean;
}

async function chooseOrganization(accessToken: string): Promise<Organization> {
  const { me } = await graphql<{ me: { memberships: { organization: Organization }[] } }>(
    `{ me { memberships { organization { id name personal } } } }`,
    {},
    accessToken,
  );
  const organizations = me.memberships.map((membership) => membership.organization);
  const wanted = process.env.TOLLGATE_ORGANIZATION_ID;
  const chosen = wanted
    ? organizations.find((organization) => organization.id === wanted)
    : organizations.find((organization) => organization.personal);
  if (!chosen) throw new TollgateError('NOT_FOUND', 'no such organization among your memberships');
  return chosen;
}

async function createApiKey(accessToken: string, organizationId: string): Promise<string> {
  const { createApiKey } = await graphql<
    { createApiKey: { secret: string; apiKey: { id: string } } },
    { input: { organizationId: string; name: string; scopes: string[] } }
  >(
    `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }`,
    { input: { organizationId, name: clientName, scopes: ['USAGE_WRITE', 'USAGE_READ', 'LLM'] } },
    accessToken,
  );
  return createApiKey.secret;
}

// ------------------------------------------------------------------ usage

interface Quota {
  tokensUsed: number;
  tokenLimit: number | null;
  remaining: number | null;
}

interface UsageAuthorization {
  allowed: boolean;
  reason: string | null;
  quota: Quota;
}

/** The LLM call an extension would make; here a stand-in with fixed numbers. */
async function callModel(model: string): Promise<{ promptTokens: number; completionTokens: number }> {
  await sleep(50);
  return { promptTokens: model.length * 100, completionTokens: 42 };
}

/**
 * Authorize, call, record: the order that never loses a report. The
 * requestId is made once per call and kept for retries: the server counts
 * it once.
 */
async function reportedCall(apiKey: string, model: string, requestId: string): Promise<boolean> {
  const { authorizeUsage } = await graphql<{ authorizeUsage: UsageAuthorization }, { model: string }>(
    `query ($model: String!) {
      authorizeUsage(model: $model) { allowed reason quota { tokensUsed tokenLimit remaining } }
    }`,
    { model },
    apiKey,
  );
  if (!authorizeUsage.allowed) {
    console.log(`not calling ${model}: ${authorizeUsage.reason}`);
    return false;
  }
  const usage = await callModel(model);
  const { recordUsage } = await graphql<
    { recordUsage: { duplicate: boolean; quota: Quota } },
    { input: { model: string; promptTokens: number; completionTokens: number; requestId: string } }
  >(
    `mutation ($input: RecordUsageInput!) {
      recordUsage(input: $input) { duplicate quota { tokensUsed tokenLimit remaining } }
    }`,
    { input: { model, ...usage, requestId } },
    apiKey,
  );
  console.log(`recorded ${requestId}: ${recordUsage.quota.tokensUsed} tokens used this period`);
  return true;
}

// ----------------------------------------------------------- the gateway

/** The gateway's base URL for OpenAI clients, or null when it carries no calls. */
async function gatewayBaseUrl(): Promise<string | null> {
  const { clientConfig } = await graphql<{ clientConfig: { llmBaseUrl: string | null } }>(
    `{ clientConfig { llmBaseUrl } }`,
    {},
  );
  return clientConfig.llmBaseUrl;
}

/**
 * One chat completion through the gateway, as any OpenAI client would send
 * it (here with fetch; the openai package works the same with baseURL and
 * apiKey set). The server meters it: no report needed. Returns the
 * gateway's request id, which is the usage event's requestId.
 */
async function gatewayCall(baseUrl: string, apiKey: string, model: string): Promise<string> {
  const response = await fetch(`${baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Say hello.' }] }),
  });
  const body = (await response.json()) as {
    choices?: { message?: { content?: string } }[];
    error?: { message: string; code?: string };
  };
  if (!response.ok) throw new TollgateError(body.error?.code ?? String(response.status), body.error?.message ?? '');
  const requestId = response.headers.get('x-tollgate-request-id') ?? '';
  console.log(`gateway ${requestId}: ${body.choices?.[0]?.message?.content ?? ''}`);
  return requestId;
}

// ------------------------------------------------------------ live usage

interface UsageUpdate {
  event: { requestId: string | null; model: string; totalTokens: number; costMicroUsd: number };
  quota: Quota;
  thresholdCrossed: number | null;
}

function connect(apiKey: string): Client {
  return createClient({
    url: websocketUrl,
    webSocketImpl: WebSocket,
    // Sent in connection_init, where the server reads credentials.
    connectionParams: { Authorization: `Bearer ${apiKey}` },
  });
}

/** Calls `onUpdate` for every usage event of the organization. */
function watchUsage(client: Client, organizationId: string, onUpdate: (update: UsageUpdate) => void): () => void {
  return client.subscribe<{ usageUpdated: UsageUpdate }>(
    {
      query: `subscription ($organizationId: ID!) {
        usageUpdated(organizationId: $organizationId) {
          event { requestId model totalTokens costMicroUsd }
          quota { tokensUsed tokenLimit remaining }
          thresholdCrossed
        }
      }`,
      variables: { organizationId },
    },
    {
      next: (result) => {
        if (result.data) onUpdate(result.data.usageUpdated);
        else console.error('subscription error', JSON.stringify(result.errors));
      },
      error: (error) => console.error('subscription failed', error),
      complete: () => {},
    },
  );
}

// ------------------------------------------------------------------- main

async function main(): Promise<void> {
  const session = await deviceLogin();
  console.log('signed in');
  const organization = await chooseOrganization(session.accessToken);
  await ensureVerified(session.accessToken);
  const apiKey = await createApiKey(session.accessToken, organization.id);
  console.log(`created an API key for ${organization.name}`);

  // Report a call, then watch live and keep working: the dashboard sees
  // each new call as it is recorded.
  await reportedCall(apiKey, 'gpt-4o-mini', randomUUID());

  const client = connect(apiKey);
  const reported = new Set<string>();
  let seen: UsageUpdate | undefined;
  const stop = watchUsage(client, organization.id, (update) => {
    const mine = update.event.requestId !== null && reported.has(update.event.requestId);
    console.log(
      `live: ${update.event.model} ${update.event.totalTokens} tokens, ` +
        `${update.quota.tokensUsed} used this period${mine ? ' (this client)' : ''}`,
    );
    if (mine) seen ??= update;
  });

  // The subscription starts on the server a moment after it is sent; a
  // real extension keeps working meanwhile, and so does this one.
  const gateway = await gatewayBaseUrl();
  for (let call = 0; call < calls && !seen; call++) {
    if (gateway) {
      reported.add(await gatewayCall(gateway, apiKey, gatewayModel));
    } else {
      const requestId = randomUUID();
      reported.add(requestId);
      await reportedCall(apiKey, 'gpt-4o-mini', requestId);
    }
    await sleep(1000);
  }
  stop();
  await client.dispose();
  if (!seen) throw new Error('no live update arrived for the calls this client reported');
  console.log(`done: ${seen.quota.tokensUsed} tokens used this period`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
