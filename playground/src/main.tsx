// The Tollgate playground: GraphiQL with the server's example operations
// and a Token box whose token every request carries.
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import './playground.css';

import { StrictMode, useSyncExternalStore } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';

import { EXAMPLE_TABS } from './examples';
import { TokenStore, playgroundFetcher } from './fetcher';

const tokens = new TokenStore();
const fetcher = playgroundFetcher(tokens, window.location);

// `/playground?query=...&variables=...` opens a tab with that operation, so
// a link can share one.
const params = new URLSearchParams(window.location.search);
const shared = params.has('query') ? { query: params.get('query'), variables: params.get('variables') } : undefined;
const defaultTabs = shared ? [shared, ...EXAMPLE_TABS] : EXAMPLE_TABS;

/** GraphiQL keeps its tabs in localStorage; none means a first visit. */
function firstVisit(): boolean {
  try {
    return window.localStorage.getItem('graphiql:tabState') === null;
  } catch {
    return true;
  }
}

// GraphiQL fills the first tab's operation editor, but not its variables
// editor, from defaultTabs: hand it the opening tab's contents as well.
const opening = shared ?? (firstVisit() ? defaultTabs[0] : undefined);

/** What the box holds, in words: people paste the wrong thing. */
function describe(token: string): string {
  const value = token.trim().replace(/^bearer\s+/i, '');
  if (!value) return 'anonymous';
  if (value.startsWith('tg_')) return 'API key';
  const parts = value.split('.');
  if (parts.length !== 3) return 'unrecognised token';
  try {
    const payload = JSON.parse(atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'))) as { exp?: number };
    if (typeof payload.exp !== 'number') return 'access token';
    const minutes = Math.round((payload.exp * 1000 - Date.now()) / 60000);
    return minutes > 0 ? `access token, expires in ${minutes} min` : 'access token, expired: sign in again';
  } catch {
    return 'unrecognised token';
  }
}

function TokenBox() {
  const token = useSyncExternalStore(
    (changed) => tokens.subscribe(changed),
    () => tokens.get(),
  );
  return (
    <header className="tg-bar">
      <span className="tg-title">Tollgate</span>
      <label htmlFor="tg-token">Token</label>
      <input
        id="tg-token"
        className="tg-token"
        type="text"
        spellCheck={false}
        autoComplete="off"
        placeholder="Access token or API key (tg_live_...); running SignUp fills it in"
        value={token}
        onChange={(event) => tokens.set(event.target.value)}
      />
      <span id="tg-token-kind" className="tg-token-kind">
        {describe(token)}
      </span>
      <button type="button" className="tg-clear" onClick={() => tokens.set('')} disabled={!token}>
        Clear
      </button>
    </header>
  );
}

function Playground() {
  return (
    <div className="tg-page">
      <TokenBox />
      <div className="tg-graphiql">
        <GraphiQL
          fetcher={fetcher}
          defaultTabs={defaultTabs}
          initialQuery={opening?.query ?? undefined}
          initialVariables={opening?.variables ?? undefined}
          defaultEditorToolsVisibility="variables"
        >
          <GraphiQL.Logo>Tollgate</GraphiQL.Logo>
        </GraphiQL>
      </div>
    </div>
  );
}

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <Playground />
    </StrictMode>,
  );
}
