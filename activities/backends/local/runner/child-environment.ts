/**
 * Variables kept by name. What the interpreter, the standard library and common native libraries read:
 * - PATH, HOME, USER, LOGNAME: program lookup (also for `pythonExecutable` given without a folder),
 *   `os.path.expanduser` and `getpass.getuser`.
 * - LANG, LANGUAGE, TZ: locale and time zone; LC_* is kept by prefix below.
 * - TMPDIR, TEMP, TMP: `tempfile`'s folder.
 * - XDG_*_HOME, XDG_RUNTIME_DIR: per-user cache and configuration folders that libraries such as matplotlib use.
 * - VIRTUAL_ENV, CONDA_PREFIX, CONDA_DEFAULT_ENV: the active virtual environment.
 * - LD_LIBRARY_PATH, DYLD_LIBRARY_PATH, DYLD_FALLBACK_LIBRARY_PATH: where native libraries such as CUDA or MKL are
 *   installed outside the system folders.
 * - OMP_NUM_THREADS and the BLAS thread counts, CUDA_VISIBLE_DEVICES: how much of the machine a process may use.
 * - SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE: paths of the CA certificates to trust.
 * Proxy variables are kept by their own rule, at `PROXY_VARIABLES`.
 */
const KEPT_NAMES: ReadonlySet<string> = new Set([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'TEMP',
  'TMP',
  'XDG_CACHE_HOME',
  'XDG_CONFIG_HOME',
  'XDG_DATA_HOME',
  'XDG_STATE_HOME',
  'XDG_RUNTIME_DIR',
  'VIRTUAL_ENV',
  'CONDA_PREFIX',
  'CONDA_DEFAULT_ENV',
  'LD_LIBRARY_PATH',
  'DYLD_LIBRARY_PATH',
  'DYLD_FALLBACK_LIBRARY_PATH',
  'OMP_NUM_THREADS',
  'MKL_NUM_THREADS',
  'OPENBLAS_NUM_THREADS',
  'NUMEXPR_NUM_THREADS',
  'VECLIB_MAXIMUM_THREADS',
  'CUDA_VISIBLE_DEVICES',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
]);

/** Prefixes of kept variables: the locale categories and the interpreter's own settings such as PYTHONPATH. */
const KEPT_PREFIXES = ['LC_', 'PYTHON'];

/** Words that mark a variable under a kept prefix as secret, such as a hypothetical `PYTHON_INDEX_TOKEN`. */
const SECRET_NAME_PATTERN = /TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|KEY|AUTH/i;

/** Proxy variables, compared in upper case because tools read both `HTTPS_PROXY` and `https_proxy`. */
const PROXY_VARIABLES: ReadonlySet<string> = new Set(['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY']);

/** A `user:password@` or `token@` part in a proxy URL, as in `http://user:password@proxy:3128`. */
const PROXY_CREDENTIALS_PATTERN = /^(?:[a-z][a-z0-9+.-]*:\/\/)?[^/@]+@/i;

/**
 * Builds the environment of a process that the local runner starts: the job driver, and the Python worker
 * processes that run the entry script. Only the variables that Python and common libraries need to run on this
 * machine are copied from `parent` (the names are listed at `KEPT_NAMES`). Everything else is left out, because an
 * entry script could print any variable into its rows or logs. That includes:
 * - `TEMPORAL_*`: the worker's Temporal address, namespace, API key and TLS client key.
 * - `AZURE_*`, `AZUREML_*`, `MSI_*`, `IDENTITY_*`, `IMDS_ENDPOINT`: the worker's Azure credential and managed
 *   identity. A job that reads Key Vault gets its own identity variables through the job's `environment`.
 * - `AMLBATCH_*`: the worker's settings. The exception is `AMLBATCH_SECRET_<NAME>`: those variables exist to hand
 *   a secret to entry scripts on this machine (the scoring package's secret source reads them, as the vault stage
 *   checks), so they are kept. Every other secret reaches a script by name only, from the file in
 *   `AMLBATCH_SECRETS_FILE` or from Key Vault, which the job's `environment` names.
 * - variables under a kept prefix whose name contains a secret word (TOKEN, SECRET, KEY, PASSWORD and the like).
 * - proxy variables whose URL contains credentials, because those are the worker's own. Proxy variables without
 *   credentials are kept, so that a script can reach Key Vault or a model store from a network that needs a proxy.
 * - any other variable, such as a cloud provider's key or a database URL: on Azure ML the entry script never gets
 *   the worker's environment either, so a script that depends on it would fail there.
 *
 * Applying the function to its own result returns the same variables, so the job driver, whose environment was
 * built by this function, passes the same set on to its Python processes.
 *
 * NOTE: this keeps credentials out of the environment only. The entry script runs as the worker's user and can
 * still read the worker's files, such as `~/.azure` or the Temporal TLS key.
 */
export function runnerChildEnvironment(parent: NodeJS.ProcessEnv): Record<string, string> {
  const passed = new Set((parent[PASS_ENVIRONMENT_VARIABLE] ?? '').split(',').map((name) => name.trim()).filter((name) => name !== ''));
  const environment: Record<string, string> = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value !== undefined && (passed.has(name) || isKept(name, value))) environment[name] = value;
  }
  // Kept itself, so the job driver passes the same extra names on to its Python processes.
  if (passed.size > 0) environment[PASS_ENVIRONMENT_VARIABLE] = [...passed].join(',');
  return environment;
}

/**
 * Worker setting: a comma-separated list of further variables that entry scripts get, such as `HF_HOME,TORCH_HOME`.
 * The operator who starts the worker decides; no batch input can widen it.
 */
export const PASS_ENVIRONMENT_VARIABLE = 'AMLBATCH_PASS_ENVIRONMENT';

/** Secrets given to the entry scripts of local batches by environment; see `LocalSecretSource`. */
const ENTRY_SCRIPT_SECRET_PREFIX = 'AMLBATCH_SECRET_';

function isKept(name: string, value: string): boolean {
  if (name.startsWith(ENTRY_SCRIPT_SECRET_PREFIX)) return true;
  if (PROXY_VARIABLES.has(name.toUpperCase())) return !PROXY_CREDENTIALS_PATTERN.test(value);
  if (KEPT_NAMES.has(name)) return true;
  return KEPT_PREFIXES.some((prefix) => name.startsWith(prefix)) && !SECRET_NAME_PATTERN.test(name);
}
