// How the playground talks to the server: queries and mutations by HTTP
// POST, subscriptions over graphql-ws, both to this page's own origin (the
// only place the Content-Security-Policy lets it connect to), both carrying
// the token from the Token box.
import { createGraphiQLFetcher, type Fetcher, type FetcherOpts, type FetcherParams } from '@graphiql/toolkit';
import { Kind, parse, type DocumentNode, type OperationDefinitionNode } from 'graphql';

const TOKEN_KEY = 'tollgate.playground.token';

/** Results that carry a new session, whose access token the box takes. */
const SESSION_FIELDS = ['register', 'login', 'refreshSession', 'pollDeviceLogin'];

type Listener = (token: string) => void;

/** The token typed (or captured) in the Token box, kept across reloads. */
export class TokenStore {
  private token: string;
  private listeners = new Set<Listener>();

  constructor() {
    this.token = readStorage();
  }

  get(): string {
    return this.token;
  }

  set(token: string): void {
    this.token = token.trim();
    writeStorage(this.token);
    this.listeners.forEach((listener) => listener(this.token));
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

function readStorage(): string {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

function writeStorage(token: string): void {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Private windows may refuse storage; the token then lasts the page.
  }
}

/** `Bearer <token>` (a pasted `Bearer ...` is kept as it is). */
export function authorization(token: string): string | undefined {
  if (!token) return undefined;
  return /^bearer\s/i.test(token) ? token : `Bearer ${token}`;
}

/** The same-origin GraphQL endpoints, for http(s) and ws(s). */
export function endpoints(location: Location): { url: string; subscriptionUrl: string } {
  const wsScheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    url: `${location.origin}/graphql`,
    subscriptionUrl: `${wsScheme}//${location.host}/graphql`,
  };
}

/**
 * A GraphiQL fetcher that reads the token at every call: HTTP requests get
 * it as the Authorization header, subscriptions in connection_init. The
 * toolkit opens one graphql-ws client per subscription, so a new token
 * takes effect with the next operation. Headers typed in GraphiQL's own
 * Headers editor win over the box.
 */
export function playgroundFetcher(tokens: TokenStore, location: Location): Fetcher {
  const { url, subscriptionUrl } = endpoints(location);
  const capturingFetch: typeof fetch = async (input, init) => {
    const response = await window.fetch(input, init);
    captureSession(response.clone(), tokens);
    return response;
  };
  return (params, options) => {
    const auth = authorization(tokens.get());
    const credentials: Record<string, string> = auth ? { Authorization: auth } : {};
    const fetcher = createGraphiQLFetcher({
      url,
      subscriptionUrl,
      headers: credentials,
      wsConnectionParams: credentials,
      fetch: capturingFetch,
    });
    const current = withCurrentDocument(params, options);
    return fetcher(current.params, current.options);
  };
}

/**
 * GraphiQL re-reads the operation's name and document a moment after its
 * editor changes, so a run right after switching tabs would send the
 * previous tab's operation name (and could send a subscription over HTTP).
 * Parse what is being sent instead.
 */
function withCurrentDocument(
  params: FetcherParams,
  options: FetcherOpts | undefined,
): { params: FetcherParams; options: FetcherOpts | undefined } {
  let document: DocumentNode;
  try {
    document = parse(params.query);
  } catch {
    return { params, options }; // the server names the syntax error
  }
  const operations = document.definitions.filter(
    (definition): definition is OperationDefinitionNode => definition.kind === Kind.OPERATION_DEFINITION,
  );
  const names = operations.map((operation) => operation.name?.value);
  let operationName = params.operationName;
  if (operations.length === 1 && !names.includes(operationName ?? undefined)) {
    operationName = names[0] ?? null;
  }
  return { params: { ...params, operationName }, options: { ...options, documentAST: document } };
}

/** Puts the access token of a sign-up or sign-in result into the box. */
function captureSession(response: Response, tokens: TokenStore): void {
  const type = response.headers.get('content-type') ?? '';
  if (!type.includes('json')) return;
  response
    .json()
    .then((body: { data?: Record<string, unknown> | null }) => {
      for (const field of SESSION_FIELDS) {
        const payload = body?.data?.[field] as { accessToken?: unknown } | null | undefined;
        if (typeof payload?.accessToken === 'string') {
          tokens.set(payload.accessToken);
          return;
        }
      }
    })
    .catch(() => {
      // Not JSON after all: nothing to capture.
    });
}
