// The tabs a first-time visitor opens with: the five-minute tour of the
// README, in order. GraphiQL names each tab after its operation.
import type { GraphiQLProps } from 'graphiql';

type TabDefinition = NonNullable<GraphiQLProps['defaultTabs']>[number];

/** Placeholder the visitor replaces with an id from the Me result. */
export const ORGANIZATION_PLACEHOLDER = 'paste an organization id from the Me result';

/** Placeholder the visitor replaces with the verification link's token. */
export const TOKEN_PLACEHOLDER = 'paste the token= part of the verification link';

const json = (value: unknown) => JSON.stringify(value, null, 2);

const SIGN_UP = `# Creates an account and its personal organization.
# Its access token goes into the Token box above.
mutation SignUp($input: RegisterInput!) {
  register(input: $input) {
    accessToken
    expiresIn
    user { id email name }
  }
}
`;

const ME = `# Who the token in the Token box belongs to.
query Me {
  me {
    id
    email
    name
    emailVerified
    memberships {
      role
      organization {
        id
        name
        plan { key name }
        quota { tokensUsed tokenLimit remaining }
      }
    }
  }
}
`;

const VERIFY_EMAIL = `# API keys are for accounts that proved their email.
# Paste the token of the link in the verification email
# (without SMTP_URL, the server writes that email to its log).
mutation VerifyEmail($token: String!) {
  verifyEmail(token: $token) {
    email
    emailVerified
  }
}
`;

const CREATE_API_KEY = `# An API key for an extension or a script (your email
# must be verified first: see VerifyEmail). The secret
# is shown once: send it as Authorization: Bearer ...
mutation CreateApiKey($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    secret
    apiKey { id name scopes }
  }
}
`;

const RECORD_USAGE = `# Reports one LLM call. With an API key in the Token
# box, leave organizationId out: the key's is used.
mutation RecordUsage($input: RecordUsageInput!) {
  recordUsage(input: $input) {
    duplicate
    event {
      id model promptTokens completionTokens
      totalTokens costMicroUsd
    }
    quota { tokensUsed tokenLimit remaining }
  }
}
`;

const WATCH_USAGE = `# The organization's usage events, live (websocket).
# Run it, then RecordUsage in another tab or by curl.
subscription WatchUsage($organizationId: ID!) {
  usageUpdated(organizationId: $organizationId) {
    event {
      model promptTokens completionTokens
      totalTokens costMicroUsd requestId
    }
    quota { tokensUsed tokenLimit remaining }
    thresholdCrossed
  }
}
`;

export const EXAMPLE_TABS: TabDefinition[] = [
  {
    query: SIGN_UP,
    variables: json({
      input: { email: 'ada@example.com', password: 'correct horse battery staple', name: 'Ada' },
    }),
  },
  { query: VERIFY_EMAIL, variables: json({ token: TOKEN_PLACEHOLDER }) },
  { query: ME },
  {
    query: CREATE_API_KEY,
    variables: json({
      input: { organizationId: ORGANIZATION_PLACEHOLDER, name: 'my laptop', scopes: ['USAGE_WRITE', 'USAGE_READ'] },
    }),
  },
  {
    query: RECORD_USAGE,
    variables: json({
      input: {
        organizationId: ORGANIZATION_PLACEHOLDER,
        model: 'gpt-4o-mini',
        promptTokens: 1200,
        completionTokens: 300,
        requestId: 'playground-1',
      },
    }),
  },
  { query: WATCH_USAGE, variables: json({ organizationId: ORGANIZATION_PLACEHOLDER }) },
];
