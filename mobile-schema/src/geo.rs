//! Positions as the device reported them. Coordinates are stored as received, in
//! the named CRS (WGS-84 or CGCS2000, which agree to centimetres); GCJ-02 is a
//! display conversion and never stored as an original.

use chrono::{DateTime, FixedOffset};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The coordinate reference system a position was recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Crs {
    #[default]
    Wgs84,
    Cgcs2000,
}

/// A point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// A GNSS fix. It is one merge unit: a fix with the latitude of one reading and
/// the longitude of another would be a lie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GnssFix {
    pub lat: f64,
    pub lon: f64,
    /// Horizontal accuracy in metres, as the receiver reported it.
    pub accuracy_m: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_m: Option<f64>,
    /// When the fix was taken (device clock, with its offset).
    pub fix_time: DateTime<FixedOffset>,
    #[serde(default)]
    pub crs: Crs,
}

impl GnssFix {
    pub fn point(&self) -> LatLon {
        LatLon {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// Where a site is: a point, and optionally the radius or polygon that counts as
/// "on site".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub crs: Crs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
    /// Outline of the site, as (lat, lon) vertices; closed implicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon: Option<Vec<LatLon>>,
}

impl Location {
    pub fn point(&self) -> LatLon {
        LatLon {
            lat: self.lat,
            lon: self.lon,
        }
    }

    /// Distance in metres from `p` to the site's area: 0 inside the polygon or
    /// radius, else the distance to its edge (to the point when neither is set).
    pub fn distance_outside_m(&self, p: LatLon) -> f64 {
        if let Some(poly) = self.polygon.as_deref().filter(|v| v.len() >= 3) {
            if point_in_polygon(p, poly) {
                return 0.0;
            }
            return distance_to_polygon_edge_m(p, poly);
        }
        let d = haversine_m(self.point(), p);
        (d - self.radius_m.unwrap_or(0.0)).max(0.0)
    }
}

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres.
pub fn haversine_m(a: LatLon, b: LatLon) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Ray casting on lat/lon as plane coordinates: good enough for site-sized shapes.
pub fn point_in_polygon(p: LatLon, poly: &[LatLon]) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let x = (b.lon - a.lon) * (p.lat - a.lat) / (b.lat - a.lat) + a.lon;
            if p.lon < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

fn distance_to_polygon_edge_m(p: LatLon, poly: &[LatLon]) -> f64 {
    // Project onto a local plane in metres around p, then point-segment distance.
    let k_lat = 111_320.0;
    let k_lon = 111_320.0 * p.lat.to_radians().cos();
    let to_xy = |q: LatLon| ((q.lon - p.lon) * k_lon, (q.lat - p.lat) * k_lat);
    let mut best = f64::INFINITY;
    for i in 0..poly.len() {
        let (ax, ay) = to_xy(poly[i]);
        let (bx, by) = to_xy(poly[(i + 1) % poly.len()]);
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = dx * dx + dy * dy;
        let t = if len2 == 0.0 {
            0.0
        } else {
            (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
        };
        let (cx, cy) = (ax + t * dx, ay + t * dy);
        best = best.min((cx * cx + cy * cy).sqrt());
    }
    best
}

/// Rough bounding boxes that catch typing and receiver mistakes (DOMAIN.md).
pub mod bounds {
    use super::LatLon;

    pub const CHINA: (f64, f64, f64, f64) = (18.0, 54.0, 73.0, 135.0);
    pub const GUANGXI: (f64, f64, f64, f64) = (20.9, 26.4, 104.4, 112.1);

    pub fn within(p: LatLon, (lat_min, lat_max, lon_min, lon_max): (f64, f64, f64, f64)) -> bool {
        (lat_min..=lat_max).contains(&p.lat) && (lon_min..=lon_max).contains(&p.lon)
    }

    /// The box of a province, by the first two digits of its GB/T 2260 code,
    /// where we know it.
    pub fn of_province(code_prefix: u32) -> Option<(f64, f64, f64, f64)> {
        match code_prefix {
            45 => Some(GUANGXI),
            _ => None,
        }
    }

    /// Only these are errors; anything else inside them is at worst a flag.
    pub fn possible(lat: f64, lon: f64) -> bool {
        lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_a_known_distance() {
        // Guilin to Nanning, about 360 km apart.
        let guilin = LatLon {
            lat: 25.2736,
            lon: 110.2900,
        };
        let nanning = LatLon {
            lat: 22.8170,
            lon: 108.3665,
        };
        let d = haversine_m(guilin, nanning);
        assert!((330_000.0..=350_000.0).contains(&d), "{d}");
    }

    #[test]
    fn radius_and_polygon_decide_on_site() {
        let loc = Location {
            lat: 24.0,
            lon: 108.0,
            crs: Crs::Wgs84,
            radius_m: Some(500.0),
            polygon: None,
        };
        assert_eq!(
            loc.distance_outside_m(LatLon {
                lat: 24.001,
                lon: 108.0
            }),
            0.0
        );
        assert!(loc.distance_outside_m(LatLon { lat: 24.02, lon: 108.0 }) > 1_500.0);

        let square = Location {
            polygon: Some(vec![
                LatLon { lat: 24.0, lon: 108.0 },
                LatLon { lat: 24.0, lon: 108.01 },
                LatLon {
                    lat: 24.01,
                    lon: 108.01,
                },
                LatLon { lat: 24.01, lon: 108.0 },
            ]),
            ..loc
        };
        assert_eq!(
            square.distance_outside_m(LatLon {
                lat: 24.005,
                lon: 108.005
            }),
            0.0
        );
        let d = square.distance_outside_m(LatLon {
            lat: 24.005,
            lon: 108.02,
        });
        assert!((900.0..1_100.0).contains(&d), "{d}");
    }
}
