import path from 'node:path';
import { PathSelector, compileGlob } from '../../activities/ledger/glob';

/** [pattern, path, expected match]. */
const CASES: [string, string, boolean][] = [
  ['*.png', 'a.png', true],
  ['*.png', 'x/a.png', false],
  ['**/*.png', 'a.png', true],
  ['**/*.png', 'x/y/a.png', true],
  ['**/*.png', 'x/y/a.jpg', false],
  ['a/**', 'a', false],
  ['a/**', 'a/b', true],
  ['a/**', 'a/b/c', true],
  ['a/**/c', 'a/c', true],
  ['a/**/c', 'a/x/y/c', true],
  ['a/**/**/c', 'a/x/c', true],
  ['**/a/**', 'a/x', true],
  ['**/a/**', 'x/a', false],
  ['**', 'any/path/at/all', true],
  ['a**/c', 'ab/c', true],
  ['a**/c', 'ax/y/c', false],
  ['a?c', 'abc', true],
  ['a?c', 'a/c', false],
  ['[abc].txt', 'b.txt', true],
  ['[!abc].txt', 'b.txt', false],
  ['[^abc].txt', 'd.txt', true],
  ['[a-c]x', 'bx', true],
  ['[a-c]x', 'dx', false],
  ['[!a]', '/', false],
  ['a[1].png', 'a1.png', true],
  ['a[1].png', 'a[1].png', false],
  ['a\\[1\\].png', 'a[1].png', true],
  ['a[b', 'a[b', true],
  ['*.{png,jpg}', 'a.jpg', true],
  ['*.{png,jpg}', 'a.gif', false],
  ['{a,b}{1,2}', 'b1', true],
  ['{a,b/**}', 'b/x/y', true],
  ['{a}', '{a}', true],
  ['{a}', 'a', false],
  ['a{b', 'a{b', true],
  ['x.{1..3}', 'x.2', false],
  ['scan (1).png', 'scan (1).png', true],
  ['a+b.png', 'a+b.png', true],
  ['a+b.png', 'aab.png', false],
  ['$x^.png', '$x^.png', true],
  ['*', '.hidden', true],
  ['**/*.tmp', 'x/.cache.tmp', true],
  ['?.png', '😀.png', true],
  ['café/*', 'café/menu.txt', true],
];

describe('glob patterns', () => {
  test.each(CASES)('%j against %j is %j', (pattern, relativePath, expected) => {
    expect(compileGlob(pattern).test(relativePath)).toBe(expected);
  });

  // path.matchesGlob runs minimatch in Node 20.17 and later. These patterns differ from it on purpose for dot files
  // and astral characters, and do not expand numeric ranges such as {1..3}. path.matchesGlob also treats `\` as a
  // path separator, not an escape (minimatch's windowsPathsNoEscape). Those cases are left out of the comparison.
  const nodeMatchesGlob = (path as { matchesGlob?: (file: string, pattern: string) => boolean }).matchesGlob;
  const comparable = CASES.filter(
    ([pattern, relativePath]) => !/(^|\/)\./.test(relativePath) && !relativePath.includes('😀') && !pattern.includes('..') && !pattern.includes('\\'),
  );
  (nodeMatchesGlob === undefined ? test.skip : test)('agrees with node:path matchesGlob', () => {
    const disagreements = comparable.filter(([pattern, relativePath]) => compileGlob(pattern).test(relativePath) !== nodeMatchesGlob?.(relativePath, pattern));
    expect(disagreements.map(([pattern, relativePath]) => `${pattern} ${relativePath}`)).toEqual([]);
  });

  test.each([
    ['', /empty/],
    ['!*.png', /negation is not supported; move the pattern to the exclude list/],
    ['/abs/*.png', /relative to the input folder; remove the prefix/],
    ['./x/*.png', /relative to the input folder/],
    ['@(a|b).png', /contains the extglob "@\(", which is not supported/],
    ['{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}', /expands to more than 1024 alternatives/],
    ['[z-a]', /glob pattern "\[z-a\]" is invalid/],
  ])('pattern %j is rejected', (pattern, message) => {
    expect(() => compileGlob(pattern)).toThrow(message);
  });

  test('exclude wins over include', () => {
    const selector = new PathSelector(['images/**'], ['**/*.tmp']);
    expect(selector.exclusionOf('images/a.png')).toBeUndefined();
    expect(selector.exclusionOf('images/a.tmp')).toEqual({ kind: 'exclude_pattern', pattern: '**/*.tmp' });
    expect(selector.exclusionOf('other/a.png')).toEqual({ kind: 'no_include_pattern' });
  });

  test('no patterns select everything', () => {
    const selector = new PathSelector();
    expect(selector.selectsAll).toBe(true);
    expect(selector.exclusionOf('anything')).toBeUndefined();
  });
});
