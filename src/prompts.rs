//! Prompts files (`generate --prompts FILE`): one prompt per line, blank lines and `#`
//! comments skipped, bounded in size, with errors that name the offending line.

use std::io::{BufRead, BufReader, Read};

/// Most prompts one file may hold (one job each).
pub const MAX_PROMPTS: usize = 10_000;
/// Longest line read, in bytes: far above the longest valid prompt (1000 characters of up to
/// four bytes each), low enough that one endless line cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// One prompt and the line it came from (counting from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptLine {
    pub line: usize,
    pub text: String,
}

/// Why a prompts file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    #[error("line {line} is not valid UTF-8 (bad byte at column {column}); save the file as UTF-8")]
    InvalidUtf8 { line: usize, column: usize },
    #[error(
        "line {line} is longer than {MAX_LINE_BYTES} bytes; a prompt has at most 1000 characters"
    )]
    LineTooLong { line: usize },
    #[error("the file has more than {MAX_PROMPTS} prompts; split it into several files")]
    TooMany,
    #[error("the file has no prompts (blank lines and # comments are skipped)")]
    Empty,
    #[error("cannot read line {line}")]
    Io {
        line: usize,
        #[source]
        source: std::io::Error,
    },
}

impl PromptsError {
    /// The line the error is about, when it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            PromptsError::InvalidUtf8 { line, .. }
            | PromptsError::LineTooLong { line }
            | PromptsError::Io { line, .. } => Some(*line),
            PromptsError::TooMany | PromptsError::Empty => None,
        }
    }
}

/// Reads every prompt of `reader`. Lines end at `\n` (a `\r` before it is removed with the
/// rest of the surrounding whitespace); a final line without a newline counts. Nothing but a
/// line at a time (at most [`MAX_LINE_BYTES`]) is held beyond the prompts kept.
pub fn read_prompts(reader: impl Read) -> Result<Vec<PromptLine>, PromptsError> {
    let mut reader = BufReader::new(reader);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        line += 1;
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| PromptsError::Io { line, source })?;
        if n == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE_BYTES {
            return Err(PromptsError::LineTooLong { line });
        }
        let text = std::str::from_utf8(&buf).map_err(|e| PromptsError::InvalidUtf8 {
            line,
            column: e.valid_up_to() + 1,
        })?;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if out.len() == MAX_PROMPTS {
            return Err(PromptsError::TooMany);
        }
        out.push(PromptLine {
            line,
            text: text.to_string(),
        });
    }
    if out.is_empty() {
        return Err(PromptsError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Vec<(usize, String)>, PromptsError> {
        read_prompts(bytes).map(|v| v.into_iter().map(|p| (p.line, p.text)).collect())
    }

    #[test]
    fn lines_comments_blank_lines_and_line_numbers() {
        let got = read(b"# header\n\n  a red ball \r\nblue\t\n#x\nlast").unwrap();
        assert_eq!(
            got,
            vec![
                (3, "a red ball".to_string()),
                (4, "blue".to_string()),
                (6, "last".to_string())
            ]
        );
    }

    #[test]
    fn invalid_utf8_names_the_line_and_column() {
        let err = read(b"ok\nab\xffcd\n").unwrap_err();
        assert!(
            matches!(err, PromptsError::InvalidUtf8 { line: 2, column: 3 }),
            "{err:?}"
        );
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn an_endless_line_is_refused_without_reading_it_all() {
        struct Endless(usize);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                assert!(self.0 < 4 * MAX_LINE_BYTES, "read far past the line limit");
                buf.fill(b'a');
                Ok(buf.len())
            }
        }
        let err = read_prompts(Endless(0)).unwrap_err();
        assert!(
            matches!(err, PromptsError::LineTooLong { line: 1 }),
            "{err:?}"
        );
        // A line of exactly the limit is fine.
        let mut ok = vec![b'a'; MAX_LINE_BYTES];
        ok.push(b'\n');
        assert_eq!(read(&ok).unwrap().len(), 1);
        let mut long = vec![b'a'; MAX_LINE_BYTES + 1];
        long.push(b'\n');
        assert!(matches!(
            read(&long),
            Err(PromptsError::LineTooLong { line: 1 })
        ));
    }

    #[test]
    fn empty_files_and_too_many_prompts_are_refused() {
        assert!(matches!(read(b""), Err(PromptsError::Empty)));
        assert!(matches!(read(b"# only\n\n   \n"), Err(PromptsError::Empty)));
        let many = "p\n".repeat(MAX_PROMPTS);
        assert_eq!(read(many.as_bytes()).unwrap().len(), MAX_PROMPTS);
        let too_many = "p\n".repeat(MAX_PROMPTS + 1);
        assert!(matches!(
            read(too_many.as_bytes()),
            Err(PromptsError::TooMany)
        ));
    }
}
