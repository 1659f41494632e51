//! Teams of two distinct inspectors (at least two per inspection, with 执法证).
//! Inspectors come from the site's county; when it has fewer than two who may
//! go (recusals, 回避), they are borrowed from its city, then its province.
//! Within each of these tiers the least loaded go first; ties go by the order the
//! county's draw gave its inspectors (双随机: inspectors are drawn too), then by id.

use std::collections::HashMap;

use super::{Inspector, ScheduleError};
use crate::ids::{SiteId, UserId};
use crate::region::RegionCode;

/// Inspectors indexed by region, with their running load.
#[derive(Debug)]
pub struct TeamPool<'a> {
    inspectors: &'a [Inspector],
    recused: Vec<Vec<SiteId>>,
    by_region: HashMap<RegionCode, Vec<usize>>,
    by_city: HashMap<RegionCode, Vec<usize>>,
    by_province: HashMap<RegionCode, Vec<usize>>,
    index: HashMap<UserId, usize>,
    load: Vec<u32>,
    rank: Vec<u32>,
}

impl<'a> TeamPool<'a> {
    pub fn new(inspectors: &'a [Inspector]) -> Self {
        let mut by_region: HashMap<RegionCode, Vec<usize>> = HashMap::new();
        let mut by_city: HashMap<RegionCode, Vec<usize>> = HashMap::new();
        let mut by_province: HashMap<RegionCode, Vec<usize>> = HashMap::new();
        let mut index = HashMap::with_capacity(inspectors.len());
        for (i, insp) in inspectors.iter().enumerate() {
            by_region.entry(insp.region).or_default().push(i);
            by_city.entry(insp.region.city()).or_default().push(i);
            by_province.entry(insp.region.province()).or_default().push(i);
            index.insert(insp.id, i);
        }
        let recused = inspectors
            .iter()
            .map(|i| {
                let mut r = i.recused_from.clone();
                r.sort_unstable();
                r
            })
            .collect();
        TeamPool {
            inspectors,
            recused,
            by_region,
            by_city,
            by_province,
            index,
            load: vec![0; inspectors.len()],
            rank: vec![u32::MAX; inspectors.len()],
        }
    }

    /// The inspectors whose own region is exactly `region`.
    pub fn of_region(&self, region: RegionCode) -> Vec<UserId> {
        self.by_region
            .get(&region)
            .map(|v| v.iter().map(|&i| self.inspectors[i].id).collect())
            .unwrap_or_default()
    }

    /// Set the tie-break order from a draw: earlier in `order` goes first.
    pub fn set_rank(&mut self, order: &[UserId]) {
        for (r, id) in order.iter().enumerate() {
            if let Some(&i) = self.index.get(id) {
                self.rank[i] = r as u32;
            }
        }
    }

    /// Count an existing assignment towards an inspector's load.
    pub fn add_load(&mut self, id: UserId) {
        if let Some(&i) = self.index.get(&id) {
            self.load[i] += 1;
        }
    }

    /// Choose and book a team of two for `site` in `county`.
    pub fn assign(&mut self, site: SiteId, county: RegionCode) -> Result<Vec<UserId>, ScheduleError> {
        let mut chosen: Vec<usize> = Vec::with_capacity(2);
        let city = county.city();
        let tiers: [(Option<&Vec<usize>>, Tier); 3] = [
            (self.by_region.get(&county), Tier::Own),
            (self.by_city.get(&city), Tier::City),
            (self.by_province.get(&county.province()), Tier::Province),
        ];
        for (list, tier) in tiers {
            if chosen.len() == 2 {
                break;
            }
            let Some(list) = list else { continue };
            let mut best: [Option<(u32, u32, UserId, usize)>; 2] = [None, None];
            for &i in list {
                let insp = &self.inspectors[i];
                // Each tier adds only those the previous tiers did not hold.
                let in_tier = match tier {
                    Tier::Own => true,
                    Tier::City => insp.region != county,
                    Tier::Province => insp.region.city() != city && insp.region != county,
                };
                if !in_tier || chosen.contains(&i) || self.recused[i].binary_search(&site).is_ok() {
                    continue;
                }
                let key = (self.load[i], self.rank[i], insp.id, i);
                if best[0].is_none_or(|b| key < b) {
                    best[1] = best[0];
                    best[0] = Some(key);
                } else if best[1].is_none_or(|b| key < b) {
                    best[1] = Some(key);
                }
            }
            for (_, _, _, i) in best.into_iter().flatten() {
                if chosen.len() < 2 {
                    chosen.push(i);
                }
            }
        }
        if chosen.len() < 2 {
            return Err(ScheduleError::NoValidTeam { county, site });
        }
        for &i in &chosen {
            self.load[i] += 1;
        }
        Ok(chosen.iter().map(|&i| self.inspectors[i].id).collect())
    }
}

#[derive(Debug, Clone, Copy)]
enum Tier {
    Own,
    City,
    Province,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insp(name: &str, region: &str, recused: &[SiteId]) -> Inspector {
        Inspector {
            id: UserId::from_name("t", name),
            region: region.parse().unwrap(),
            recused_from: recused.to_vec(),
        }
    }

    #[test]
    fn teams_are_balanced_within_the_county() {
        let list = [
            insp("a", "450332", &[]),
            insp("b", "450332", &[]),
            insp("c", "450332", &[]),
        ];
        let mut pool = TeamPool::new(&list);
        let county = "450332".parse().unwrap();
        let mut count = HashMap::new();
        for n in 0..6 {
            let team = pool.assign(SiteId::from_name("s", &n.to_string()), county).unwrap();
            assert_eq!(team.len(), 2);
            assert_ne!(team[0], team[1]);
            for id in team {
                *count.entry(id).or_insert(0) += 1;
            }
        }
        assert!(count.values().all(|&c| c == 4), "{count:?}");
    }

    #[test]
    fn a_county_with_one_inspector_borrows_from_its_city_before_the_province() {
        let list = [
            insp("own", "450332", &[]),
            insp("city", "450300", &[]),
            insp("prov", "450000", &[]),
        ];
        let mut pool = TeamPool::new(&list);
        let team = pool
            .assign(SiteId::from_name("s", "1"), "450332".parse().unwrap())
            .unwrap();
        assert_eq!(team, vec![list[0].id, list[1].id]);
    }

    #[test]
    fn recusals_push_to_the_next_tier_and_an_impossible_team_names_the_county() {
        let site = SiteId::from_name("s", "1");
        let list = [
            insp("own", "450332", &[site]),
            insp("own2", "450332", &[]),
            insp("prov", "450000", &[site]),
        ];
        let mut pool = TeamPool::new(&list);
        let county: RegionCode = "450332".parse().unwrap();
        let err = pool.assign(site, county).unwrap_err();
        assert_eq!(err, ScheduleError::NoValidTeam { county, site });
        assert!(err.to_string().contains("450332"));
    }
}
