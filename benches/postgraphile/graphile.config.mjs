// PostGraphile v5 for the reads benchmark (benches/README.md): the Amber
// preset (PostGraphile's defaults) over the server's `public` schema, on
// the database the benchmark gives in DATABASE_URL, listening on PORT.
// The pool has as many connections as the server's (DATABASE_POOL_SIZE's
// default, 16), so both read with the same number of backends.
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

export default {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: 16 },
    }),
  ],
  grafserv: { host: "127.0.0.1", port: Number(process.env.PORT), graphiql: false, watch: false },
  grafast: { explain: false },
};
