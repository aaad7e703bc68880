// Builds the playground into dist/, which the server embeds and serves at
// /playground under a Content-Security-Policy without 'unsafe-eval' or
// inline scripts: every script, worker, font and stylesheet is a file of
// its own here, nothing is fetched from a CDN, and file names depend only
// on their contents, so `npm run build` reproduces the committed dist/.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/playground/',
  oxc: { jsx: { runtime: 'automatic' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // data: URLs would need img-src/font-src exceptions in the policy.
    assetsInlineLimit: 0,
    sourcemap: false,
    // Monaco is large; the playground is a developer tool served locally.
    chunkSizeWarningLimit: 8000,
    modulePreload: { polyfill: false },
    rolldownOptions: {
      // React libraries mark their modules "use client", which means
      // nothing outside server components; the notice buries real warnings.
      onLog(level, log, handler) {
        if (log.code === 'MODULE_LEVEL_DIRECTIVE') return;
        handler(level, log);
      },
    },
  },
  // Monaco's workers (editor, GraphQL, JSON) become files under dist/assets,
  // loaded from the same origin (worker-src 'self').
  worker: { format: 'es' },
  server: {
    // `npm run dev` next to `cargo run`: the API stays on port 8000.
    proxy: {
      '/graphql': { target: 'http://127.0.0.1:8000', ws: true },
    },
  },
});
