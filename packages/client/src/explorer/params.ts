/**
 * The search filters' names, in a module of its own with no imports, so that the explorer's page (a browser
 * bundle) takes its form fields from the same list as the API and the CLI.
 */
/** The query-string names of the filters, as the API and the CLI spell them. */
export const FILTER_PARAMS = [
  'actor',
  'target',
  'method',
  'path',
  'protocol',
  'decision',
  'status',
  'from',
  'to',
  'request_id',
  'stream',
  'q',
] as const;
