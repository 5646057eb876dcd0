/**
 * Splits a command-line string into arguments as a POSIX shell does, without expansions. White space separates
 * words, and single quotes keep everything literally. Inside double quotes a backslash escapes `"`, `\`, `$` and a
 * backquote, and outside quotes it escapes any character. Throws on an unterminated quote or trailing backslash.
 */
export function splitShellWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let index = 0;

  const fail = (what: string): never => {
    throw new Error(`program_arguments ${JSON.stringify(text)} has ${what}; close it or escape it with a backslash`);
  };

  while (index < text.length) {
    const char = text[index];
    if (char === "'") {
      const end = text.indexOf("'", index + 1);
      if (end === -1) fail(`an unterminated single quote at position ${index}`);
      word += text.slice(index + 1, end);
      inWord = true;
      index = end + 1;
    } else if (char === '"') {
      index += 1;
      for (;;) {
        if (index >= text.length) fail('an unterminated double quote');
        const inner = text[index];
        if (inner === '"') break;
        if (inner === '\\' && index + 1 < text.length && '"\\$`'.includes(text[index + 1])) {
          word += text[index + 1];
          index += 2;
        } else {
          word += inner;
          index += 1;
        }
      }
      inWord = true;
      index += 1;
    } else if (char === '\\') {
      if (index + 1 >= text.length) fail('a trailing backslash');
      word += text[index + 1];
      inWord = true;
      index += 2;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      index += 1;
    } else {
      word += char;
      inWord = true;
      index += 1;
    }
  }
  if (inWord) words.push(word);
  return words;
}
