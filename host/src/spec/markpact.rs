//! markpact: services written as Markdown. A README's fenced code blocks tagged
//! `markpact:<kind>` become the service's files, dependencies, run command and tests.
//!
//! Parsing uses a real CommonMark parser (comrak), so blocks keep document order whichever
//! header style they use, an empty block is an empty block, and a longer fence (```` ```` ````)
//! can hold fenced code. Both header styles of the reference are accepted:
//!
//! ```text
//! ```python markpact:file path=main.py      (new: language first)
//! ```markpact:file python path=main.py      (old: kind first, the language is the first bare word)
//! ```
//!
//! `<!-- markpact:include path=other.md -->` splices another file's blocks in place (relative to
//! the including file, depth ≤ 5, cycles reported with the whole chain).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use comrak::nodes::NodeValue;
use comrak::{Arena, Options, parse_document};
use serde::Serialize;

use super::diagnostic::{Diagnostic, Diagnostics, SourceFile, did_you_mean};
use super::source::SourceCache;

/// Includes nest at most this deep.
pub const MAX_INCLUDE_DEPTH: usize = 5;

/// A position in a source file, shown as `path:line:col`.
#[derive(Clone)]
pub struct Loc {
    /// The file.
    pub file: Arc<SourceFile>,
    /// Byte range in it.
    pub span: Range<usize>,
}

impl Loc {
    /// 1-based line of the start.
    pub fn line(&self) -> usize {
        self.file.line_col(self.span.start).0
    }
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file.location(self.span.start))
    }
}

impl std::fmt::Debug for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Serialize for Loc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The kinds of block the format defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// `file path=P`: a file of the sandbox.
    File,
    /// `deps`: one dependency per line, installer chosen by language.
    Deps,
    /// `run`: the command that starts the service.
    Run,
    /// `test`: HTTP checks, or shell commands with the `shell` language.
    Test,
    /// `build`: an explicit build command.
    Build,
    /// Reference-only: a self-contained runner script.
    Bootstrap,
    /// Reference-only: publish metadata.
    Publish,
    /// Reference-only: desktop/mobile targets.
    Target,
    /// Reference-only: `kind: service/job/...` with `restart_policy`.
    Workload,
}

const KINDS: &[(&str, BlockKind)] = &[
    ("file", BlockKind::File),
    ("deps", BlockKind::Deps),
    ("run", BlockKind::Run),
    ("test", BlockKind::Test),
    ("build", BlockKind::Build),
    ("bootstrap", BlockKind::Bootstrap),
    ("publish", BlockKind::Publish),
    ("target", BlockKind::Target),
    ("workload", BlockKind::Workload),
];

/// Options each kind understands; others get a warning.
fn known_options(kind: BlockKind) -> Option<&'static [&'static str]> {
    match kind {
        BlockKind::File => Some(&["path", "template", "mode"]),
        BlockKind::Run => Some(&["runtime"]),
        BlockKind::Deps | BlockKind::Test | BlockKind::Build => Some(&[]),
        _ => None,
    }
}

/// A `key=value` word of a block header (a bare word is `key=true`).
#[derive(Debug, Clone)]
pub struct MetaItem {
    /// Left of `=`.
    pub key: String,
    /// Right of `=`.
    pub value: String,
    /// The whole word.
    pub loc: Loc,
}

/// One markpact block as written.
#[derive(Debug, Clone)]
pub struct Block {
    /// What it is.
    pub kind: BlockKind,
    /// Its language word, if any.
    pub lang: Option<String>,
    /// Its options.
    pub meta: Vec<MetaItem>,
    /// Its content, exactly as written (with the trailing newline the fence implies).
    pub body: String,
    /// The header's info string.
    pub loc: Loc,
    /// 1-based line of the first body line.
    pub body_line: usize,
}

impl Block {
    /// The value of option `key`.
    pub fn option(&self, key: &str) -> Option<&MetaItem> {
        self.meta.iter().find(|m| m.key == key)
    }

    /// A location for body line `index` (0-based), spanning `col_range` bytes of that line
    /// when it can be found, else the whole line.
    pub fn body_loc(&self, index: usize, needle: Option<&str>) -> Loc {
        let line = self.body_line + index;
        let range = self.loc.file.line_range(line);
        let span = match needle {
            Some(n) if !n.is_empty() => self.loc.file.text[range.clone()]
                .find(n)
                .map_or(range.clone(), |i| {
                    range.start + i..range.start + i + n.len()
                }),
            _ => range,
        };
        Loc {
            file: self.loc.file.clone(),
            span,
        }
    }
}

/// Parse a README into its markpact blocks, following includes. Problems go to `diags`.
pub fn parse_blocks(path: &Path, cache: &SourceCache, diags: &mut Diagnostics) -> Vec<Block> {
    let source = match cache.load(path) {
        Ok(s) => s,
        Err(e) => {
            diags.push(Diagnostic::file_error(
                "readme::unreadable",
                format!("cannot read README `{}`: {e}", path.display()),
            ));
            return Vec::new();
        }
    };
    let mut blocks = Vec::new();
    let mut chain = vec![canonical(path)];
    parse_source(&source, cache, &mut chain, &mut blocks, diags);
    blocks
}

/// The README at `path` as one self-contained file: every include replaced by the included
/// file's own bundle, the rest byte for byte (what `pactown publish` sends). Meant for a README
/// that loaded without errors (so its includes are known to be finite and readable).
pub fn bundle(path: &Path) -> std::io::Result<String> {
    bundle_at(&SourceCache::default(), path, 0)
}

fn bundle_at(cache: &SourceCache, path: &Path, depth: usize) -> std::io::Result<String> {
    let source = cache.load(path)?;
    let arena = Arena::new();
    let root = parse_document(&arena, &source.text, &Options::default());
    let mut ignored = Diagnostics::default();
    let mut includes = Vec::new();
    for node in root.descendants() {
        let ast = node.data.borrow();
        if let NodeValue::HtmlBlock(_) | NodeValue::HtmlInline(_) = &ast.value {
            let start = source.line_range(ast.sourcepos.start.line).start;
            let end = source.line_range(ast.sourcepos.end.line).end;
            includes.extend(include_directives(&source, start..end, &mut ignored));
        }
    }
    includes.sort_by_key(|(span, _)| span.start);
    let dir = source.path.parent().unwrap_or(Path::new(""));
    let mut out = String::with_capacity(source.text.len());
    let mut at = 0;
    for (span, rel) in includes {
        if span.start < at || Path::new(&rel).is_absolute() || depth >= MAX_INCLUDE_DEPTH {
            continue;
        }
        out.push_str(&source.text[at..span.start]);
        out.push_str(bundle_at(cache, &dir.join(&rel), depth + 1)?.trim_end_matches('\n'));
        at = span.end;
    }
    out.push_str(&source.text[at..]);
    Ok(out)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn parse_source(
    source: &Arc<SourceFile>,
    cache: &SourceCache,
    chain: &mut Vec<PathBuf>,
    blocks: &mut Vec<Block>,
    diags: &mut Diagnostics,
) {
    let arena = Arena::new();
    let options = Options::default();
    let root = parse_document(&arena, &source.text, &options);
    for node in root.descendants() {
        let ast = node.data.borrow();
        match &ast.value {
            NodeValue::CodeBlock(code) if code.fenced => {
                let line = ast.sourcepos.start.line;
                let end_line = ast.sourcepos.end.line;
                if let Some(block) = header(source, line, &code.info, code, end_line, diags) {
                    blocks.push(block);
                }
            }
            NodeValue::HtmlBlock(_) | NodeValue::HtmlInline(_) => {
                let start = source.line_range(ast.sourcepos.start.line).start;
                let end = source.line_range(ast.sourcepos.end.line).end;
                for (span, path) in include_directives(source, start..end, diags) {
                    include(source, span, &path, cache, chain, blocks, diags);
                }
            }
            _ => {}
        }
    }
}

/// `<!-- markpact:include path=P -->` occurrences in `range`: their spans and paths.
fn include_directives(
    source: &Arc<SourceFile>,
    range: Range<usize>,
    diags: &mut Diagnostics,
) -> Vec<(Range<usize>, String)> {
    let text = &source.text[range.clone()];
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(open) = text[at..].find("<!--") {
        let open = at + open;
        // The close must come after the opening `<!--` (`<!-->` is not a closed comment).
        let Some(close) = text[open + 4..].find("-->") else {
            break;
        };
        let close = open + 4 + close + 3;
        at = close;
        let inner = &text[open + 4..close - 3];
        let mut words = words(inner, range.start + open + 4);
        let Some((first, first_span)) = words.next() else {
            continue;
        };
        if first != "markpact:include" {
            continue;
        }
        let span = range.start + open..range.start + close;
        let mut path = None;
        for (word, word_span) in words {
            match word.split_once('=') {
                Some(("path", p)) if !p.is_empty() => path = Some(p.trim_matches('"').to_string()),
                _ => diags.push(
                    Diagnostic::warning(
                        "readme::include-option",
                        format!("unknown include option `{word}`"),
                        source,
                        word_span,
                    )
                    .with_help("an include takes one option: `path=other.md`"),
                ),
            }
        }
        match path {
            Some(p) => found.push((span, p)),
            None => diags.push(
                Diagnostic::error(
                    "readme::include-path",
                    "include without a path",
                    source,
                    first_span,
                )
                .with_help("write `<!-- markpact:include path=other.md -->`"),
            ),
        }
    }
    found
}

fn include(
    source: &Arc<SourceFile>,
    span: Range<usize>,
    rel: &str,
    cache: &SourceCache,
    chain: &mut Vec<PathBuf>,
    blocks: &mut Vec<Block>,
    diags: &mut Diagnostics,
) {
    if Path::new(rel).is_absolute() {
        diags.push(
            Diagnostic::error(
                "readme::include-absolute",
                format!("include path `{rel}` is absolute"),
                source,
                span,
            )
            .with_help("include paths are relative to the including file"),
        );
        return;
    }
    let dir = source.path.parent().unwrap_or(Path::new(""));
    let path = dir.join(rel);
    let key = canonical(&path);
    if let Some(pos) = chain.iter().position(|p| *p == key) {
        let names: Vec<String> = chain[pos..]
            .iter()
            .chain(std::iter::once(&key))
            .map(|p| short_name(p))
            .collect();
        diags.push(
            Diagnostic::error(
                "readme::include-cycle",
                format!("include cycle: {}", names.join(" → ")),
                source,
                span,
            )
            .with_label("this include closes the cycle")
            .with_help("remove one of the includes in the cycle"),
        );
        return;
    }
    if chain.len() > MAX_INCLUDE_DEPTH {
        diags.push(
            Diagnostic::error(
                "readme::include-depth",
                format!("includes nest deeper than {MAX_INCLUDE_DEPTH} levels"),
                source,
                span,
            )
            .with_help("flatten the includes: put the blocks in fewer files"),
        );
        return;
    }
    let included = match cache.load(&path) {
        Ok(s) => s,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    "readme::include-missing",
                    format!("cannot read included file `{}`: {e}", path.display()),
                    source,
                    span,
                )
                .with_help("the path is relative to the file that includes it"),
            );
            return;
        }
    };
    chain.push(key);
    parse_source(&included, cache, chain, blocks, diags);
    chain.pop();
}

fn short_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Whitespace-separated words of `text` with their absolute byte spans (`base` is the offset of
/// `text` in the file).
fn words(text: &str, base: usize) -> impl Iterator<Item = (&str, Range<usize>)> {
    text.split_ascii_whitespace().map(move |w| {
        let start = w.as_ptr() as usize - text.as_ptr() as usize;
        (w, base + start..base + start + w.len())
    })
}

/// Read a fenced block's header. Returns `None` for blocks that are not markpact's.
fn header(
    source: &Arc<SourceFile>,
    line: usize,
    info: &str,
    code: &comrak::nodes::NodeCodeBlock,
    end_line: usize,
    diags: &mut Diagnostics,
) -> Option<Block> {
    if !info.contains("markpact:") {
        return None;
    }
    let line_range = source.line_range(line);
    let line_text = &source.text[line_range.clone()];
    // Find the info string in the raw line so every word has its exact column.
    let fence_end = line_text
        .find(['`', '~'])
        .map(|i| i + code.fence_length)
        .unwrap_or(0)
        .min(line_text.len());
    let raw = &line_text[fence_end..];
    let raw_base = line_range.start + fence_end;
    let ws: Vec<(&str, Range<usize>)> = if raw.trim() == info {
        words(raw, raw_base).collect()
    } else {
        // comrak unescaped something; fall back to spanning the whole line for each word.
        info.split_ascii_whitespace()
            .map(|w| (w, line_range.clone()))
            .collect()
    };
    let tag_index = ws.iter().position(|(w, _)| w.starts_with("markpact:"))?;
    let info_span = ws.first().map_or(line_range.start, |(_, s)| s.start)
        ..ws.last().map_or(line_range.end, |(_, s)| s.end);
    let loc = |span: Range<usize>| Loc {
        file: source.clone(),
        span,
    };
    let (tag, tag_span) = ws[tag_index].clone();
    if tag_index > 1 {
        diags.push(
            Diagnostic::error(
                "readme::header",
                format!("`{tag}` must be the first or second word of the block header"),
                source,
                tag_span,
            )
            .with_help(format!(
                "write ```LANG {tag} key=value``` or ```{tag} LANG key=value```"
            )),
        );
        return None;
    }
    let kind_name = &tag["markpact:".len()..];
    let Some(kind) = KINDS.iter().find(|(n, _)| *n == kind_name).map(|(_, k)| *k) else {
        let mut d = Diagnostic::warning(
            "readme::unknown-kind",
            format!("unknown block kind `markpact:{kind_name}`; the block is ignored"),
            source,
            tag_span,
        );
        d = match (
            kind_name,
            did_you_mean(kind_name, KINDS.iter().map(|(n, _)| *n)),
        ) {
            ("include", _) => {
                d.with_help("includes are HTML comments: `<!-- markpact:include path=other.md -->`")
            }
            (_, Some(s)) => d.with_help(format!("did you mean `markpact:{s}`?")),
            _ => d.with_help(format!(
                "known kinds: {}",
                KINDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )),
        };
        diags.push(d);
        return None;
    };
    let mut lang = (tag_index == 1).then(|| ws[0].0.to_string());
    let mut meta = Vec::new();
    for (i, (word, span)) in ws.iter().enumerate().skip(tag_index + 1) {
        match word.split_once('=') {
            Some((key, value)) => meta.push(MetaItem {
                key: key.to_string(),
                value: value.trim_matches('"').to_string(),
                loc: loc(span.clone()),
            }),
            // Old style: the first bare word after the kind is the language.
            None if lang.is_none() && i == tag_index + 1 => lang = Some(word.to_string()),
            None => meta.push(MetaItem {
                key: word.to_string(),
                value: "true".to_string(),
                loc: loc(span.clone()),
            }),
        }
    }
    if let Some(known) = known_options(kind) {
        for m in &meta {
            if !known.contains(&m.key.as_str()) {
                let mut d = Diagnostic::warning(
                    "readme::unknown-option",
                    format!(
                        "unknown option `{}` for `markpact:{kind_name}`; it is ignored",
                        m.key
                    ),
                    source,
                    m.loc.span.clone(),
                );
                d = match did_you_mean(&m.key, known.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None if known.is_empty() => {
                        d.with_help(format!("`markpact:{kind_name}` takes no options"))
                    }
                    None => d.with_help(format!("known options: {}", known.join(", "))),
                };
                diags.push(d);
            }
        }
    }
    if !code.closed {
        diags.push(
            Diagnostic::warning(
                "readme::unclosed-fence",
                format!("this `markpact:{kind_name}` block is never closed; it runs to the end of the file (line {end_line})"),
                source,
                info_span.clone(),
            )
            .with_help("close the block with a fence as long as its opening one"),
        );
    }
    Some(Block {
        kind,
        lang,
        meta,
        body: code.literal.clone(),
        loc: loc(info_span),
        body_line: line + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Block>, Diagnostics) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("README.md");
        std::fs::write(&path, text).unwrap();
        let cache = SourceCache::default();
        let mut diags = Diagnostics::default();
        let blocks = parse_blocks(&path, &cache, &mut diags);
        (blocks, diags)
    }

    #[test]
    fn both_styles_in_document_order() {
        let (blocks, diags) = parse(
            "```markpact:deps python\nflask\n```\n\n```python markpact:file path=a.py\nA\n```\n\n```markpact:file python path=b.py\nB\n```\n",
        );
        assert!(diags.is_empty(), "{diags}");
        let kinds: Vec<_> = blocks.iter().map(|b| (b.kind, b.lang.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (BlockKind::Deps, Some("python".into())),
                (BlockKind::File, Some("python".into())),
                (BlockKind::File, Some("python".into())),
            ]
        );
        assert_eq!(blocks[1].option("path").unwrap().value, "a.py");
        assert_eq!(blocks[2].option("path").unwrap().value, "b.py");
        assert_eq!(blocks[2].body, "B\n");
        assert_eq!(
            blocks[2].loc.to_string().rsplit_once('/').unwrap().1,
            "README.md:9:4"
        );
    }

    #[test]
    fn empty_block_does_not_swallow_its_neighbour() {
        let (blocks, _) =
            parse("```markpact:file path=empty.txt\n```\n\n```markpact:file path=b.txt\nB\n```\n");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].body, "");
        assert_eq!(blocks[1].body, "B\n");
    }

    #[test]
    fn longer_fence_holds_a_fence() {
        let (blocks, _) = parse("````markpact:file path=doc.md\n```\ninner\n```\n````\n");
        assert_eq!(blocks[0].body, "```\ninner\n```\n");
    }

    #[test]
    fn unknown_kind_is_a_warning() {
        let (blocks, diags) = parse("```markpact:fiel path=x\n```\n");
        assert!(blocks.is_empty());
        assert!(!diags.has_errors());
        assert!(diags.render(false).contains("did you mean `markpact:file`"));
    }
}
