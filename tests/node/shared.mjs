// What the client scripts share: the server's address and credentials
// from the environment, the operations they send, and a fetch that notes
// each request.

/** TOLLGATE_URL, MEMBER_TOKEN, KEY_SECRET and ORG_ID, as the tests set them. */
export const settings = {
  httpUrl: `${process.env.TOLLGATE_URL}/graphql`,
  wsUrl: `${process.env.TOLLGATE_URL}/graphql`.replace(/^http/, 'ws'),
  memberToken: process.env.MEMBER_TOKEN,
  keySecret: process.env.KEY_SECRET,
  organizationId: process.env.ORG_ID,
};

/** The organization with a field a MEMBER may not read. */
export const ORGANIZATION = /* GraphQL */ `
  query Organization($id: ID!) {
    organization(id: $id) {
      id
      name
      auditLog(first: 5) {
        totalCount
      }
    }
  }
`;

/** Usage as it is recorded. */
export const USAGE = /* GraphQL */ `
  subscription Usage($organizationId: ID!) {
    usageUpdated(organizationId: $organizationId) {
      event {
        model
        totalTokens
      }
    }
  }
`;

/** One LLM call reported by an API key. */
export const RECORD = /* GraphQL */ `
  mutation Record($input: RecordUsageInput!) {
    recordUsage(input: $input) {
      duplicate
      event {
        id
        model
        totalTokens
      }
    }
  }
`;

/** A fetch that notes what each request carried and how it was answered. */
export function recordingFetch(requests) {
  return async (input, init = {}) => {
    const url = new URL(typeof input === 'string' ? input : input.url);
    const body = typeof init.body === 'string' ? JSON.parse(init.body) : null;
    const response = await fetch(input, init);
    requests.push({
      method: init.method ?? 'GET',
      withQuery: Boolean(body?.query ?? url.searchParams.get('query')),
      withHash: Boolean(
        body?.extensions?.persistedQuery?.sha256Hash ?? url.searchParams.get('extensions')?.includes('sha256Hash'),
      ),
      status: response.status,
      contentType: response.headers.get('content-type'),
    });
    return response;
  };
}

/** Waits `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
