// The dashboard's shared, mutable state: one object that every module reads and
// changes in place (an imported binding cannot be reassigned; its properties can).

export var state = {
  token: null,
  gen: 0, // bumped at each sign-in and sign-out; stale answers are dropped
  timer: null,
  inFlight: null,
  again: false,
  data: { metrics: null, routes: null, tokens: null, audit: null, accounts: null, budgets: null },
  errors: {},
  pendingRevoke: null,
  pendingRevokeIn: null, // the container ('tokens' or 'principals') whose row asked
  revoking: null,
  accountsApi: null, // false once GET /service-accounts answered 404 (an older gateway)
  budgetsApi: null, // false once GET /budgets answered 404 (an older gateway)
  expanded: new Set(), // principal keys whose tokens are shown
  pendingDelete: null, // service account name awaiting confirmation
  deleting: null,
  issueFor: null, // service account the side form issues a token for
  auditBefore: null, // null: newest page
  auditHistory: [],
  lastRefresh: null,
};
