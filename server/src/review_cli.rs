//! `fieldsync review ...` and `fieldsync hazards ...`: a supervisor's surface
//! against a running server, through the same API as any client. Each command
//! answers text for people, or the API's JSON with `--json` for scripts.

use std::fmt::Write as _;

use mobile_schema::ids::{InspectionId, SiteId};
use mobile_schema::region::RegionCode;
use mobile_schema::review::Decision;

use crate::admin_client::{AdminClient, ClientError};
use crate::hazards::HazardSummary;
use crate::review::{CommentIn, Comments, DecisionRequest, InspectionSummary};
use sync_protocol::wire::percent_encode;

/// Pages fetched by `--all` at most: 200 pages of 500 is far beyond a bureau.
const MAX_PAGES: usize = 200;

/// The filters and page of a listing.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    #[arg(long)]
    pub site: Option<SiteId>,
    /// A county, a city (its counties) or the province (GB/T 2260).
    #[arg(long)]
    pub region: Option<RegionCode>,
    /// First day (Asia/Shanghai) of the visit, or of the hazard's notice.
    #[arg(long)]
    pub from: Option<chrono::NaiveDate>,
    /// Last day, inclusive.
    #[arg(long)]
    pub to: Option<chrono::NaiveDate>,
    /// Only records carrying this flag code.
    #[arg(long)]
    pub flag: Option<String>,
    /// Records per page (1-500).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continue from a `next_cursor`.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the cursors and print every page.
    #[arg(long)]
    pub all: bool,
    /// The API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl FilterArgs {
    fn query(&self, status: Option<&str>, cursor: Option<&str>) -> String {
        let mut parts = Vec::new();
        let mut add = |k: &str, v: String| parts.push(format!("{k}={}", percent_encode(&v)));
        if let Some(s) = self.site {
            add("site", s.to_string());
        }
        if let Some(r) = self.region {
            add("region", r.to_string());
        }
        if let Some(s) = status {
            add("status", s.to_string());
        }
        if let Some(d) = self.from {
            add("from", d.to_string());
        }
        if let Some(d) = self.to {
            add("to", d.to_string());
        }
        if let Some(f) = &self.flag {
            add("flag", f.clone());
        }
        if let Some(l) = self.limit {
            add("limit", l.to_string());
        }
        if let Some(c) = cursor.or(self.cursor.as_deref()) {
            add("cursor", c.to_string());
        }
        parts.join("&")
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ReviewCommand {
    /// The submitted inspections waiting for review, oldest visit first.
    List(FilterArgs),
    /// One inspection: its state, review mark, and every earlier decision.
    Show {
        id: InspectionId,
        #[arg(long)]
        json: bool,
    },
    /// Approve a submitted inspection.
    Approve(DecideArgs),
    /// Return a submitted inspection to its inspector with comments.
    Return(DecideArgs),
}

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    pub id: InspectionId,
    /// A comment (repeat for several; `UNIT=TEXT` ties one to a unit such as
    /// `answers/TP-09=补充照片`). A return needs at least one.
    #[arg(long = "comment")]
    pub comments: Vec<String>,
    /// The content tag `review show` printed: the decision is refused if the
    /// inspection changed since. Required to approve.
    #[arg(long)]
    pub seen: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum HazardsCommand {
    /// Hazards of your regions, by notice day.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// identified, notified, rectifying, rectification_submitted, verified or closed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Hazards past their deadline and not rectified, with the count per county.
    Overdue(FilterArgs),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot print the answer: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the server kept giving pages past {MAX_PAGES}: narrow the filters")]
    TooManyPages,
    #[error(
        "an approval names the content it approves: pass --seen with the content tag `fieldsync review show` printed"
    )]
    SeenRequired,
}

/// Runs a `review` command; returns what to print.
pub fn review(client: &AdminClient, command: ReviewCommand) -> Result<String, CliError> {
    match command {
        ReviewCommand::List(f) => {
            let items = pages(&f, |cursor| client.review_queue(&f.query(None, cursor)))?;
            if f.json {
                return Ok(serde_json::to_string_pretty(&items)?);
            }
            let mut out = String::new();
            for i in &items.items {
                line_of_inspection(&mut out, i);
            }
            footer(
                &mut out,
                items.items.len(),
                items.next_cursor.as_deref(),
                "waiting for review",
            );
            Ok(out)
        }
        ReviewCommand::Show { id, json } => {
            let d = client.review_show(id)?;
            if json {
                return Ok(serde_json::to_string_pretty(&d)?);
            }
            let mut out = String::new();
            line_of_inspection(&mut out, &d.summary);
            if let Some(mark) = &d.summary.review {
                let _ = writeln!(
                    out,
                    "last decision: {} (review {}){}",
                    mark.decision,
                    mark.review,
                    if mark.changed_since_review {
                        ", content changed since"
                    } else {
                        ""
                    }
                );
            }
            let _ = writeln!(
                out,
                "content {tag}: decide on what you read with --seen {tag}",
                tag = d.content_tag
            );
            for f in &d.summary.flags {
                let _ = writeln!(out, "flag {}: {} ({})", f.code, f.message, f.field);
            }
            for c in &d.summary.conflicts {
                let _ = writeln!(out, "conflict in {c}");
            }
            for dec in &d.decisions {
                let _ = writeln!(out, "{} {:?} by {}", dec.decided_at, dec.decision, dec.reviewer);
                for c in &dec.comments {
                    match &c.unit {
                        Some(u) => {
                            let _ = writeln!(out, "  - [{u}] {}", c.text);
                        }
                        None => {
                            let _ = writeln!(out, "  - {}", c.text);
                        }
                    }
                }
            }
            Ok(out)
        }
        ReviewCommand::Approve(a) => decide(client, a, Decision::Approve),
        ReviewCommand::Return(a) => decide(client, a, Decision::Return),
    }
}

fn decide(client: &AdminClient, a: DecideArgs, decision: Decision) -> Result<String, CliError> {
    // Approving unread content is what the tag prevents; a return asks for
    // changes anyway, so it may go without.
    if decision == Decision::Approve && a.seen.is_none() {
        return Err(CliError::SeenRequired);
    }
    let comments = a.comments.iter().map(|c| comment_of(c)).collect();
    let answer = client.decide(
        a.id,
        decision,
        &DecisionRequest {
            comments: Comments::List(comments),
            reviewed: None,
            seen: a.seen,
        },
    )?;
    if a.json {
        return Ok(serde_json::to_string_pretty(&answer)?);
    }
    Ok(format!(
        "{} is now {} (review {})\n",
        answer.inspection_id, answer.status, answer.review_id
    ))
}

/// `--comment UNIT=TEXT` or `--comment TEXT`. A unit key is ASCII, e.g.
/// `answers/TP-09`, so text such as `结论=不清` stays text.
fn comment_of(arg: &str) -> CommentIn {
    match arg.split_once('=') {
        Some((unit, text))
            if !unit.is_empty() && unit.bytes().all(|b| b.is_ascii_alphanumeric() || b"_/-.".contains(&b)) =>
        {
            CommentIn {
                text: text.to_string(),
                unit: Some(unit.to_string()),
            }
        }
        _ => CommentIn {
            text: arg.to_string(),
            unit: None,
        },
    }
}

/// Runs a `hazards` command; returns what to print.
pub fn hazards(client: &AdminClient, command: HazardsCommand) -> Result<String, CliError> {
    match command {
        HazardsCommand::List { filter, status } => {
            let page = pages(&filter, |cursor| {
                client.hazards(&filter.query(status.as_deref(), cursor))
            })?;
            if filter.json {
                return Ok(serde_json::to_string_pretty(&page)?);
            }
            let mut out = String::new();
            for h in &page.items {
                line_of_hazard(&mut out, h);
            }
            footer(&mut out, page.items.len(), page.next_cursor.as_deref(), "hazards");
            Ok(out)
        }
        HazardsCommand::Overdue(f) => {
            let mut answer = client.overdue_hazards(&f.query(None, None))?;
            let mut fetched = 1;
            while f.all
                && let Some(c) = answer.next_cursor.take()
            {
                fetched += 1;
                if fetched > MAX_PAGES {
                    return Err(CliError::TooManyPages);
                }
                let next = client.overdue_hazards(&f.query(None, Some(&c)))?;
                answer.items.extend(next.items);
                answer.next_cursor = next.next_cursor;
            }
            if f.json {
                return Ok(serde_json::to_string_pretty(&answer)?);
            }
            let mut out = format!("overdue on {}:\n", answer.today);
            for (region, n) in &answer.by_region {
                let _ = writeln!(out, "  {region}: {n}");
            }
            for h in &answer.items {
                line_of_hazard(&mut out, h);
            }
            footer(
                &mut out,
                answer.items.len(),
                answer.next_cursor.as_deref(),
                "overdue hazards",
            );
            Ok(out)
        }
    }
}

/// One page, or with `--all` every page joined.
fn pages<T>(
    f: &FilterArgs,
    mut fetch: impl FnMut(Option<&str>) -> Result<crate::query::ListPage<T>, ClientError>,
) -> Result<crate::query::ListPage<T>, CliError> {
    let mut page = fetch(None)?;
    let mut fetched = 1;
    while f.all
        && let Some(c) = page.next_cursor.take()
    {
        fetched += 1;
        if fetched > MAX_PAGES {
            return Err(CliError::TooManyPages);
        }
        let next = fetch(Some(&c))?;
        page.items.extend(next.items);
        page.next_cursor = next.next_cursor;
    }
    Ok(page)
}

fn line_of_inspection(out: &mut String, i: &InspectionSummary) {
    let _ = writeln!(
        out,
        "{}  {}  {}  {}  {}{}{}",
        i.id,
        i.start.format("%Y-%m-%d %H:%M"),
        i.status,
        i.region.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
        i.site_name.as_deref().unwrap_or("(site not on the server)"),
        if i.flags.is_empty() {
            String::new()
        } else {
            format!(
                "  flags: {}",
                i.flags.iter().map(|f| f.code.as_str()).collect::<Vec<_>>().join(",")
            )
        },
        if i.review.as_ref().is_some_and(|m| m.changed_since_review) {
            "  changed since review"
        } else {
            ""
        }
    );
}

fn line_of_hazard(out: &mut String, h: &HazardSummary) {
    let _ = writeln!(
        out,
        "{}  {}  {}  {}  deadline {}{}  {}",
        h.id,
        h.state,
        h.region.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
        h.severity,
        h.deadline.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
        if h.overdue { " (overdue)" } else { "" },
        h.description
    );
}

fn footer(out: &mut String, n: usize, next: Option<&str>, what: &str) {
    let _ = writeln!(out, "{n} {what}");
    if let Some(c) = next {
        let _ = writeln!(out, "more: --cursor {c}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_names_its_unit_only_with_an_ascii_key() {
        let c = comment_of("answers/TP-09=请补充照片");
        assert_eq!(
            (c.unit.as_deref(), c.text.as_str()),
            (Some("answers/TP-09"), "请补充照片")
        );
        let c = comment_of("结论=不清楚");
        assert_eq!((c.unit, c.text.as_str()), (None, "结论=不清楚"));
        let c = comment_of("=x");
        assert_eq!((c.unit, c.text.as_str()), (None, "=x"));
    }

    #[test]
    fn filters_become_an_escaped_query_string() {
        let f = FilterArgs {
            region: Some(RegionCode::new(450_300).unwrap()),
            flag: Some("outside_site".into()),
            limit: Some(5),
            ..FilterArgs::default()
        };
        assert_eq!(
            f.query(Some("submitted"), Some("a b")),
            "region=450300&status=submitted&flag=outside_site&limit=5&cursor=a%20b"
        );
    }
}
