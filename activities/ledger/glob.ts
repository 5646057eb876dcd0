// Glob patterns for selecting manifest items by relative path, in minimatch's syntax.
//
// A pattern matches the whole relative path (`/`-separated, case-sensitive, exactly as the manifest spells it):
// - `*` matches any characters within one path segment, `?` matches one character within a segment.
// - `**` as a whole segment matches zero or more segments: `**/x.png` matches `x.png` and `a/b/x.png`, and
//   `a/**` matches every file below folder `a` (not a file named `a`). Inside a segment (`a**b`) it acts as `*`.
// - `[abc]`, `[a-z]`, `[!a-z]` and `[^a-z]` match one character of a class; a class never matches `/`.
// - `{png,jpg}` matches either alternative, and alternatives nest. A brace without a comma, or an unclosed one,
//   is a literal, as are an unclosed `[` and a `[]`.
// - `\` makes the next character literal.
//
// There are two deliberate differences from minimatch's defaults. First, `*`, `?` and `**` also match names that
// start with a dot (minimatch's `dot: true`), so `**/*.tmp` excludes `.cache.tmp` too. Second, `?` and classes
// match one Unicode code point, so `?.png` matches `😀.png`. Negation (a leading `!`), extglobs such as `@(a|b)` and numeric ranges such as
// `{1..3}` are not supported: the first two are rejected with an error, and `{1..3}` is a literal.
//
// Node 20.17 and later have `path.matchesGlob`, but it is experimental in Node 20 (it prints an ExperimentalWarning)
// and missing from the Node 20.3 that package.json allows. It also parses its pattern on every call, and 400,000
// calls took 3.5 s on Node 20.20, too slow for a million items. These patterns are compiled once into a RegExp.

/** Alternatives one pattern may expand to through its braces; `{a,b}{c,d}` expands to 4. */
const MAX_BRACE_EXPANSIONS = 1024;

/** Characters that have a meaning in a regular expression with the `u` flag, and so need a backslash. */
const REGEXP_SYNTAX = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);

/** Compiles one glob pattern into an anchored RegExp. Throws an error that names the pattern when it is invalid. */
export function compileGlob(pattern: string): RegExp {
  validatePattern(pattern);
  const alternatives = expandBraces(pattern, pattern).map((expanded) => compileExpanded(expanded));
  try {
    return new RegExp(`^(?:${alternatives.join('|')})$`, 'u');
  } catch (error) {
    throw new Error(`glob pattern ${JSON.stringify(pattern)} is invalid: ${(error as Error).message}`, { cause: error });
  }
}

/** Why an item is excluded: it matched an exclude pattern, or include patterns were given and it matched none. */
export type Exclusion = { kind: 'exclude_pattern'; pattern: string } | { kind: 'no_include_pattern' };

/**
 * Selects items by include and exclude patterns. An item is selected when it matches no exclude pattern and,
 * if include patterns are given, at least one of them. Exclusion wins over inclusion.
 */
export class PathSelector {
  private readonly include: RegExp[];
  private readonly exclude: { pattern: string; regexp: RegExp }[];

  constructor(includePatterns: readonly string[] = [], excludePatterns: readonly string[] = []) {
    this.include = includePatterns.map(compileGlob);
    this.exclude = excludePatterns.map((pattern) => ({ pattern, regexp: compileGlob(pattern) }));
  }

  /** True when neither include nor exclude patterns were given, so every item is selected. */
  get selectsAll(): boolean {
    return this.include.length === 0 && this.exclude.length === 0;
  }

  /** Returns why `relativePath` is excluded, or undefined when it is selected. */
  exclusionOf(relativePath: string): Exclusion | undefined {
    for (const { pattern, regexp } of this.exclude) {
      if (regexp.test(relativePath)) return { kind: 'exclude_pattern', pattern };
    }
    if (this.include.length > 0 && !this.include.some((regexp) => regexp.test(relativePath))) {
      return { kind: 'no_include_pattern' };
    }
    return undefined;
  }
}

function validatePattern(pattern: string): void {
  const quoted = JSON.stringify(pattern);
  if (pattern === '') throw new Error('glob pattern is empty; give a pattern such as "**/*.png"');
  if (pattern.startsWith('!')) {
    throw new Error(`glob pattern ${quoted} starts with "!", but negation is not supported; move the pattern to the exclude list`);
  }
  if (pattern.startsWith('/') || pattern.startsWith('./')) {
    throw new Error(
      `glob pattern ${quoted} starts with "/" or "./", but patterns match paths relative to the input folder; remove the prefix`,
    );
  }
  const extglob = /(?<!\\)[@!+*?]\(/.exec(pattern);
  if (extglob !== null) {
    throw new Error(
      `glob pattern ${quoted} contains the extglob ${JSON.stringify(extglob[0])}, which is not supported; ` +
        'use braces such as {a,b} for alternatives, or escape the character with "\\"',
    );
  }
}

/** Finds the `}` that closes the `{` at `open` (-1 when none does) and that group's commas, skipping escapes and classes. */
function findClosingBrace(pattern: string, open: number): { close: number; commas: number[] } {
  let depth = 0;
  const commas: number[] = [];
  for (let index = open; index < pattern.length; index += 1) {
    const char = pattern[index];
    if (char === '\\') {
      index += 1;
    } else if (char === '[') {
      const classEnd = findClassEnd(pattern, index);
      if (classEnd !== -1) index = classEnd;
    } else if (char === '{') {
      depth += 1;
    } else if (char === '}') {
      depth -= 1;
      if (depth === 0) return { close: index, commas };
    } else if (char === ',' && depth === 1) {
      commas.push(index);
    }
  }
  return { close: -1, commas };
}

/**
 * Expands the first brace group with at least one comma, then the rest recursively, like minimatch's brace
 * expansion. Throws when the pattern expands to more than MAX_BRACE_EXPANSIONS alternatives.
 */
function expandBraces(pattern: string, original: string): string[] {
  for (let index = 0; index < pattern.length; index += 1) {
    const char = pattern[index];
    if (char === '\\') {
      index += 1;
      continue;
    }
    if (char === '[') {
      const classEnd = findClassEnd(pattern, index);
      if (classEnd !== -1) index = classEnd;
      continue;
    }
    if (char !== '{') continue;

    const { close, commas } = findClosingBrace(pattern, index);
    if (close === -1 || commas.length === 0) continue;

    const prefix = pattern.slice(0, index);
    const suffix = pattern.slice(close + 1);
    const bounds = [index, ...commas, close];
    const expanded: string[] = [];
    for (let part = 0; part + 1 < bounds.length; part += 1) {
      const alternative = pattern.slice(bounds[part] + 1, bounds[part + 1]);
      for (const tail of expandBraces(`${alternative}${suffix}`, original)) {
        expanded.push(`${prefix}${tail}`);
        if (expanded.length > MAX_BRACE_EXPANSIONS) {
          throw new Error(
            `glob pattern ${JSON.stringify(original)} expands to more than ${MAX_BRACE_EXPANSIONS} alternatives; ` +
              'split it into several patterns',
          );
        }
      }
    }
    return expanded;
  }
  return [pattern];
}

/** Returns the index of the `]` that closes the class opened at `open`, or -1 when the class is unclosed or empty. */
function findClassEnd(pattern: string, open: number): number {
  let index = open + 1;
  if (pattern[index] === '!' || pattern[index] === '^') index += 1;
  // A `]` right after the opening bracket is a member of the class, not its end.
  if (pattern[index] === ']') index += 1;
  for (; index < pattern.length; index += 1) {
    if (pattern[index] === '\\') {
      index += 1;
      continue;
    }
    if (pattern[index] === ']') return index;
  }
  return -1;
}

/** Compiles a brace-free pattern into a RegExp source. */
function compileExpanded(pattern: string): string {
  // Consecutive `**` segments match the same paths as one, and collapsing them avoids needless backtracking.
  const segments = splitSegments(pattern).filter((segment, index, all) => !(segment === '**' && all[index - 1] === '**'));
  let source = '';
  for (let index = 0; index < segments.length; index += 1) {
    const segment = segments[index];
    const isLast = index === segments.length - 1;
    if (segment !== '**') {
      source += compileSegment(segment);
      if (!isLast) source += '/';
      continue;
    }
    if (isLast) {
      // `**` at the end: one or more segments. With nothing before it, it matches every path.
      source += index === 0 ? '.+' : '[^/]+(?:/[^/]+)*';
      continue;
    }
    // `**/` in front of more segments: zero or more whole segments, each followed by `/`.
    source += '(?:[^/]+/)*';
  }
  return source;
}

/** Splits on `/` outside classes, so `[/]` stays one segment (and then can never match, as in minimatch). */
function splitSegments(pattern: string): string[] {
  const segments: string[] = [];
  let start = 0;
  for (let index = 0; index < pattern.length; index += 1) {
    const char = pattern[index];
    if (char === '\\') {
      index += 1;
    } else if (char === '[') {
      const classEnd = findClassEnd(pattern, index);
      if (classEnd !== -1) index = classEnd;
    } else if (char === '/') {
      segments.push(pattern.slice(start, index));
      start = index + 1;
    }
  }
  segments.push(pattern.slice(start));
  return segments;
}

function compileSegment(segment: string): string {
  let source = '';
  const characters = Array.from(segment);
  for (let index = 0; index < characters.length; index += 1) {
    const char = characters[index];
    if (char === '*') {
      while (characters[index + 1] === '*') index += 1;
      source += '[^/]*';
    } else if (char === '?') {
      source += '[^/]';
    } else if (char === '\\') {
      index += 1;
      source += index < characters.length ? literal(characters[index]) : literal('\\');
    } else if (char === '[') {
      const compiled = compileClass(characters, index);
      if (compiled === undefined) {
        source += literal('[');
      } else {
        source += compiled.source;
        index = compiled.end;
      }
    } else {
      source += literal(char);
    }
  }
  return source;
}

/** Compiles the class that opens at `characters[open]`, or returns undefined when it is unclosed or empty. */
function compileClass(characters: string[], open: number): { source: string; end: number } | undefined {
  let index = open + 1;
  const negated = characters[index] === '!' || characters[index] === '^';
  if (negated) index += 1;

  const members: string[] = [];
  let first = true;
  for (; index < characters.length; index += 1) {
    let char = characters[index];
    if (char === ']' && !first) break;
    first = false;
    if (char === '\\' && index + 1 < characters.length) {
      index += 1;
      char = characters[index];
    }
    const isRange = characters[index + 1] === '-' && index + 2 < characters.length && characters[index + 2] !== ']';
    if (!isRange) {
      members.push(classMember(char));
      continue;
    }
    let rangeEnd = characters[index + 2];
    index += 2;
    if (rangeEnd === '\\' && index + 1 < characters.length) {
      index += 1;
      rangeEnd = characters[index];
    }
    members.push(`${classMember(char)}-${classMember(rangeEnd)}`);
  }
  if (index >= characters.length || members.length === 0) return undefined;

  const body = members.join('');
  return { source: negated ? `[^/${body}]` : `(?!/)[${body}]`, end: index };
}

/** Returns one code point as a `\u{…}` escape, which matches that character both inside and outside classes. */
function classMember(char: string): string {
  return `\\u{${(char.codePointAt(0) ?? 0).toString(16)}}`;
}

function literal(char: string): string {
  return REGEXP_SYNTAX.has(char) ? `\\${char}` : char;
}
