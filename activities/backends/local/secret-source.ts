import { readFile } from 'node:fs/promises';
import { StageError } from '../../errors';

/**
 * The local secret source, read the same way as the scoring package's Python helper: an environment variable
 * `AMLBATCH_SECRET_<NAME>` (upper case, `-` and `.` as `_`) first, then the JSON secrets file. Only existence is
 * checked here; values are never returned, logged or put in an error.
 */
export class LocalSecretSource {
  constructor(
    /** Absolute path of the JSON secrets file (an object of name to value). */
    readonly secretsFile: string,
    private readonly environment: NodeJS.ProcessEnv = process.env,
  ) {}

  static environmentVariableFor(name: string): string {
    return `AMLBATCH_SECRET_${name.toUpperCase().replace(/[-.]/g, '_')}`;
  }

  /** Returns the names among `names` that neither the environment nor the secrets file contains with a non-empty value. */
  async findMissing(names: string[]): Promise<string[]> {
    const fileSecrets = await this.readFileNames();
    return names.filter((name) => {
      const fromEnvironment = this.environment[LocalSecretSource.environmentVariableFor(name)];
      if (fromEnvironment !== undefined && fromEnvironment !== '') return false;
      return !fileSecrets.has(name);
    });
  }

  /** Reads the names of the secrets file's non-empty string entries; a missing file contains none. */
  private async readFileNames(): Promise<Set<string>> {
    let text: string;
    try {
      text = await readFile(this.secretsFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // The parser's message can quote the file's content, so it is not passed on.
      throw new StageError(
        'InvalidInput',
        `local secrets file ${this.secretsFile} is not valid JSON; it must hold one object of secret name to value`,
        { secretsFile: this.secretsFile },
      );
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new StageError(
        'InvalidInput',
        `local secrets file ${this.secretsFile} must hold one JSON object of secret name to value`,
        { secretsFile: this.secretsFile },
      );
    }
    const names = Object.entries(parsed as Record<string, unknown>)
      .filter(([, value]) => typeof value === 'string' && value !== '')
      .map(([name]) => name);
    return new Set(names);
  }
}
