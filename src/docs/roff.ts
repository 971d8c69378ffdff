/**
 * Just enough man(7) to write l2tpd's man pages from its tables. Text may use `code` spans
 * (bold, as man pages show literal words); everything else is escaped so that roff prints it
 * as written.
 */

/** Escape text for roff: backslashes, hyphens (so options copy as ASCII), `code` spans in bold. */
export function roffText(text: string): string {
  const escaped = text.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  return escaped.replace(/`([^`]+)`/g, '\\fB$1\\fR');
}

/** A line of roff source: one that would start with `.` or `'` is protected. */
function line(text: string): string {
  return /^[.']/.test(text) ? `\\&${text}` : text;
}

export class ManPage {
  private readonly out: string[] = [];

  /** `name(section)`, with the package's version as the source. */
  constructor(name: string, section: number, version: string, manual: string) {
    // No hyphenation: words and metric names stay whole, for reading and for searching.
    this.out.push(`.TH ${name.toUpperCase()} ${section} "" "l2tpd ${version}" "${manual}"`, '.nh');
  }

  section(title: string): this {
    this.out.push(`.SH ${title.toUpperCase()}`);
    return this;
  }

  subsection(title: string): this {
    this.out.push(`.SS ${roffText(title)}`);
    return this;
  }

  paragraph(text: string): this {
    this.out.push('.PP', line(roffText(text)));
    return this;
  }

  /** Raw roff lines, for the synopsis and other layouts the helpers do not cover. */
  raw(...lines: string[]): this {
    this.out.push(...lines);
    return this;
  }

  /** A tagged paragraph: `tag` (roff source, e.g. from term()) and its text. */
  item(tag: string, text: string): this {
    this.out.push('.TP', line(tag), line(roffText(text)));
    return this;
  }

  /** Preformatted lines (examples), printed as they are. */
  example(lines: readonly string[]): this {
    this.out.push('.PP', '.RS 4', '.nf', ...lines.map((l) => line(l.replace(/\\/g, '\\e').replace(/-/g, '\\-'))), '.fi', '.RE');
    return this;
  }

  toString(): string {
    return `${this.out.join('\n')}\n`;
  }
}

/** A placeholder (`FILE`) as a man page writes it: italic. */
export function placeholder(text: string): string {
  return `\\fI${roffText(text)}\\fR`;
}

/** `word PLACEHOLDER` as a man page writes it: the word bold, the placeholder italic. */
export function term(word: string, metavar?: string): string {
  const w = `\\fB${roffText(word)}\\fR`;
  return metavar === undefined ? w : `${w} ${placeholder(metavar)}`;
}
