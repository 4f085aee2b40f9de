"""fetch: remote inputs (https/http, root://, rucio DIDs) -> local files, verified."""
