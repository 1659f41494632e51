//! Splitting an official list (CSV) into batches for `POST /api/v1/sites/import`,
//! each with the header and the file's line number of every row, so the
//! server's reports name lines of the file and a multi-line quoted cell stays
//! one row.

/// One batch: CSV text (header first) and the file line of each row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub csv: String,
    pub lines: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the file has no header line: {0}")]
    Header(csv::Error),
    #[error("line {line}: {source}")]
    Row { line: usize, source: csv::Error },
    #[error("cannot write a batch: {0}")]
    Write(String),
}

/// The rows of `text` in batches of at most `rows` (a BOM is dropped).
pub fn batches(text: &str, rows: usize) -> Result<Vec<Batch>, BatchError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(BatchError::Header)?.clone();
    let mut out: Vec<Batch> = Vec::new();
    let mut current: Option<(csv::Writer<Vec<u8>>, Vec<usize>)> = None;
    for record in reader.records() {
        let record = record.map_err(|source| BatchError::Row {
            line: source.position().map_or(0, |p| p.line() as usize),
            source,
        })?;
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        // From the byte offset: csv's own line count drifts after blank lines.
        let line = record.position().map_or(0, |p| line_at(text, p.byte() as usize));
        let (writer, lines) = match &mut current {
            Some(c) => c,
            None => {
                let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
                w.write_record(&header).map_err(|e| BatchError::Write(e.to_string()))?;
                current.insert((w, Vec::new()))
            }
        };
        writer
            .write_record(&record)
            .map_err(|e| BatchError::Write(e.to_string()))?;
        lines.push(line);
        if lines.len() >= rows.max(1)
            && let Some((w, lines)) = current.take()
        {
            out.push(finish(w, lines)?);
        }
    }
    if let Some((w, lines)) = current.take() {
        out.push(finish(w, lines)?);
    }
    Ok(out)
}

/// The line each data row of `text` starts on (the header is line 1), as the
/// importers number them; rows whose start cannot be read are left out.
pub fn row_lines(text: &str) -> Vec<usize> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|r| r.position().map(|p| line_at(text, p.byte() as usize)))
        .collect()
}

/// The 1-based line of the byte offset `at` in `text`.
/// The offset csv gives may be that of blank lines before the record.
fn line_at(text: &str, at: usize) -> usize {
    let bytes = text.as_bytes();
    let start = at
        + bytes
            .get(at..)
            .map_or(0, |b| b.iter().take_while(|&&c| c == b'\n' || c == b'\r').count());
    bytes
        .get(..start)
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

fn finish(w: csv::Writer<Vec<u8>>, lines: Vec<usize>) -> Result<Batch, BatchError> {
    let bytes = w.into_inner().map_err(|e| BatchError::Write(e.to_string()))?;
    let csv = String::from_utf8(bytes).map_err(|e| BatchError::Write(e.to_string()))?;
    Ok(Batch { csv, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_file_lines_across_batches_and_quoted_newlines() {
        let text = "\u{feff}a,b\n1,x\n2,\"two\nlines\"\n\n3,z\n";
        let b = batches(text, 2).unwrap_or_default();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].lines, vec![2, 3]);
        assert_eq!(b[1].lines, vec![6]);
        assert!(b[1].csv.starts_with("a,b\n"));
        assert!(b[0].csv.contains("\"two\nlines\""));
        // The server maps a batch's own lines back: row 2 of batch 0 starts on its line 3.
        assert_eq!(row_lines(&b[0].csv), vec![2, 3]);
    }
}
