//! Routing by the division tree (docs/design.md §5).
//!
//! The nodes form one tree whose shape is the division codes themselves: township
//! offices and the two county offices (DPF, civil affairs) hang under their county
//! hub, county hubs under their province hub, province hubs under the national hub.
//! (The prefecture level has no hub.) A case's *route* is the smallest subtree that
//! joins its members — the acceptance office, the domicile township office and the
//! domicile county's DPF and civil affairs bureau — so it holds exactly the hubs
//! between them: the county hub of each township's county, the province hubs when
//! the two counties differ, and the national hub when the provinces differ.
//!
//! [`on_route`] and [`next_hops`] are pure functions of a node's [`Place`] and the
//! case's [`CaseRoute`]; nothing else decides where a case may go. Two
//! consequences the property tests hold: a township node is on the route only of
//! cases it accepted or whose applicant lives there, and a province hub only of
//! cases that touch its province.

use std::fmt;

use tongban_domain::division::{DivisionCode, DivisionLevel};
use tongban_domain::stage::Role;

/// Which of the two county offices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CountyOffice {
    /// The county Disabled Persons' Federation (县级残联).
    Dpf,
    /// The county civil affairs bureau (县级民政部门).
    CivilAffairs,
}

/// Where a node sits in the hub tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// The national hub: the root.
    National,
    /// A province hub, under the national hub (2-digit code).
    ProvinceHub(DivisionCode),
    /// A county hub, under its province hub (6-digit code).
    CountyHub(DivisionCode),
    /// A county office, under its county hub (6-digit code).
    CountyOffice(DivisionCode, CountyOffice),
    /// A township or street office, under its county hub (9-digit code).
    Township(DivisionCode),
    /// A supervisor (监管部门: a province's under its province hub, 2-digit code; national,
    /// `None`, under the national hub). It holds no case document, only the
    /// attestations of the cases of its region ([`attestation_on_route`]).
    Supervisor(Option<DivisionCode>),
}

/// Why a place or route cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The code has the wrong level for the place asked for.
    #[error("{what} needs a {expected} code, found {found} ({level})")]
    WrongLevel {
        /// What was being made.
        what: &'static str,
        /// The level needed.
        expected: DivisionLevel,
        /// The code given.
        found: DivisionCode,
        /// Its level.
        level: DivisionLevel,
    },
    /// The certificate's role and division do not name a place in the tree.
    #[error("role {role} with division {division:?} has no place in the hub tree")]
    NoPlace {
        /// The role.
        role: Role,
        /// The division text.
        division: String,
    },
}

fn at_level(
    what: &'static str,
    code: DivisionCode,
    expected: DivisionLevel,
) -> Result<DivisionCode, RouteError> {
    if code.level() == expected {
        Ok(code)
    } else {
        Err(RouteError::WrongLevel {
            what,
            expected,
            found: code,
            level: code.level(),
        })
    }
}

/// The division text the national hub's certificate carries: no province.
pub const NATIONAL_DIVISION: &str = "00";

impl Place {
    /// The place an office certificate gives: a township window at its 9-digit
    /// division, a county DPF or civil affairs bureau at its 6-digit county, a hub at
    /// its 6-digit county, 2-digit province or [`NATIONAL_DIVISION`], a
    /// supervisor at its 2-digit province or [`NATIONAL_DIVISION`].
    pub fn from_certificate(role: Role, division: &str) -> Result<Place, RouteError> {
        let none = || RouteError::NoPlace {
            role,
            division: division.to_string(),
        };
        if division == NATIONAL_DIVISION {
            return match role {
                Role::Hub => Ok(Place::National),
                Role::Supervisor => Ok(Place::Supervisor(None)),
                _ => Err(none()),
            };
        }
        let code = DivisionCode::parse(division).map_err(|_| none())?;
        match (role, code.level()) {
            (Role::Township, DivisionLevel::Township) => Ok(Place::Township(code)),
            (Role::CountyDpf, DivisionLevel::County) => {
                Ok(Place::CountyOffice(code, CountyOffice::Dpf))
            }
            (Role::CountyCivilAffairs, DivisionLevel::County) => {
                Ok(Place::CountyOffice(code, CountyOffice::CivilAffairs))
            }
            (Role::Hub, DivisionLevel::County) => Ok(Place::CountyHub(code)),
            (Role::Hub, DivisionLevel::Province) => Ok(Place::ProvinceHub(code)),
            (Role::Supervisor, DivisionLevel::Province) => Ok(Place::Supervisor(Some(code))),
            _ => Err(none()),
        }
    }

    /// The node above this one; `None` for the national hub.
    pub fn parent(&self) -> Option<Place> {
        match self {
            Place::National => None,
            Place::ProvinceHub(_) => Some(Place::National),
            Place::CountyHub(code) => Some(Place::ProvinceHub(code.province())),
            Place::CountyOffice(county, _) => Some(Place::CountyHub(*county)),
            Place::Township(code) => code.county().map(Place::CountyHub),
            Place::Supervisor(None) => Some(Place::National),
            Place::Supervisor(Some(province)) => Some(Place::ProvinceHub(*province)),
        }
    }

    /// Whether this node relays (a hub) rather than acts on cases.
    pub fn is_hub(&self) -> bool {
        matches!(
            self,
            Place::National | Place::ProvinceHub(_) | Place::CountyHub(_)
        )
    }

    /// Whether `other` lies in the subtree below this node (or is this node).
    pub fn contains(&self, other: &Place) -> bool {
        let mut at = Some(*other);
        while let Some(place) = at {
            if place == *self {
                return true;
            }
            at = place.parent();
        }
        false
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::National => f.write_str("hub-cn"),
            Place::ProvinceHub(code) | Place::CountyHub(code) => write!(f, "hub-{code}"),
            Place::CountyOffice(code, CountyOffice::Dpf) => write!(f, "{code}-dpf"),
            Place::CountyOffice(code, CountyOffice::CivilAffairs) => write!(f, "{code}-ca"),
            Place::Township(code) => write!(f, "{code}"),
            Place::Supervisor(None) => f.write_str("supervisor-cn"),
            Place::Supervisor(Some(code)) => write!(f, "supervisor-{code}"),
        }
    }
}

/// What routing needs to know of a case: the township of its acceptance office,
/// the township of the applicant's household registration — both fixed when the
/// case is created — and whether the case has been released to travel.
///
/// A case leaves the office that created it only once the stage that hands it
/// on is signed: `pushed` for a cross-township case, `initial_reviewed` for a
/// local one ([`released_by`]). Until then its route is the acceptance office
/// alone, so a draft — and a draft withdrawn at the window — is on no other node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaseRoute {
    acceptance: DivisionCode,
    domicile: DivisionCode,
    released: bool,
}

/// Whether a case whose signed chain reached these stages has been released to
/// travel: one of them hands it on (`pushed`, or `initial_reviewed` for a local
/// application, which passes through `publicized` at its own office).
pub fn released_by(stages: impl IntoIterator<Item = tongban_domain::stage::Stage>) -> bool {
    use tongban_domain::stage::Stage;
    stages
        .into_iter()
        .any(|stage| matches!(stage, Stage::Pushed | Stage::InitialReviewed))
}

impl CaseRoute {
    /// The route of a case accepted at township `acceptance` for an applicant
    /// registered in township `domicile`; both must be 9-digit codes.
    pub fn new(acceptance: DivisionCode, domicile: DivisionCode) -> Result<CaseRoute, RouteError> {
        Ok(CaseRoute {
            acceptance: at_level(
                "an acceptance township",
                acceptance,
                DivisionLevel::Township,
            )?,
            domicile: at_level("a domicile township", domicile, DivisionLevel::Township)?,
            released: true,
        })
    }

    /// This route, held at the acceptance office until `released` (see
    /// [`released_by`]).
    pub fn released(self, released: bool) -> CaseRoute {
        CaseRoute { released, ..self }
    }

    /// Whether the case may travel beyond its acceptance office.
    pub fn is_released(&self) -> bool {
        self.released
    }

    /// The acceptance township.
    pub fn acceptance(&self) -> DivisionCode {
        self.acceptance
    }

    /// The domicile township.
    pub fn domicile(&self) -> DivisionCode {
        self.domicile
    }

    fn county(code: DivisionCode) -> DivisionCode {
        // Township codes always have a county; the fallback is never taken.
        code.county().unwrap_or(code)
    }

    /// The domicile county.
    pub fn domicile_county(&self) -> DivisionCode {
        CaseRoute::county(self.domicile)
    }

    /// The acceptance county.
    pub fn acceptance_county(&self) -> DivisionCode {
        CaseRoute::county(self.acceptance)
    }

    /// The offices that act on the case (not the hubs): acceptance township,
    /// domicile township (the same node for a local application), domicile county
    /// DPF and civil affairs.
    pub fn members(&self) -> Vec<Place> {
        if !self.released {
            return vec![Place::Township(self.acceptance)];
        }
        let county = self.domicile_county();
        let mut members = vec![
            Place::Township(self.acceptance),
            Place::Township(self.domicile),
            Place::CountyOffice(county, CountyOffice::Dpf),
            Place::CountyOffice(county, CountyOffice::CivilAffairs),
        ];
        members.sort();
        members.dedup();
        members
    }

    /// Every node of the route: members and the hubs between them.
    pub fn nodes(&self) -> Vec<Place> {
        let mut nodes = self.members();
        if !self.released {
            return nodes;
        }
        let (a, d) = (self.acceptance_county(), self.domicile_county());
        nodes.push(Place::CountyHub(a));
        nodes.push(Place::CountyHub(d));
        if a != d {
            nodes.push(Place::ProvinceHub(a.province()));
            nodes.push(Place::ProvinceHub(d.province()));
        }
        if a.province() != d.province() {
            nodes.push(Place::National);
        }
        nodes.sort();
        nodes.dedup();
        nodes
    }
}

/// Whether the node at `node` holds cases with this route: it is a member, or a
/// hub on the tree path between two members.
pub fn on_route(node: &Place, route: &CaseRoute) -> bool {
    if !route.released {
        return *node == Place::Township(route.acceptance);
    }
    let (acceptance_county, domicile_county) = (route.acceptance_county(), route.domicile_county());
    match node {
        Place::Township(code) => *code == route.acceptance || *code == route.domicile,
        Place::CountyOffice(county, _) => *county == domicile_county,
        Place::CountyHub(county) => *county == acceptance_county || *county == domicile_county,
        // A province hub lies between the members when one of them is in its
        // province and the two counties differ (otherwise the county hub joins them).
        Place::ProvinceHub(province) => {
            (province.covers(&route.acceptance) || province.covers(&route.domicile))
                && acceptance_county != domicile_county
        }
        Place::National => acceptance_county.province() != domicile_county.province(),
        // A supervisor holds no case document.
        Place::Supervisor(_) => false,
    }
}

/// Whether the node at `node` holds the attestations of a case with this
/// route (`tongban_ledger::supervision`): every hub and supervisor whose
/// region holds the acceptance office or the domicile, up to the national
/// hub and the national supervisor, whether or not the case itself travels
/// there — a local application's attestations climb to the province and the
/// country though the case stays in its county. An office holds only those
/// it makes. Attestations carry no personal data; they travel from
/// `accepted` on, before the case itself is released.
pub fn attestation_on_route(node: &Place, route: &CaseRoute) -> bool {
    let covers =
        |region: &DivisionCode| region.covers(&route.acceptance) || region.covers(&route.domicile);
    match node {
        Place::National | Place::Supervisor(None) => true,
        Place::ProvinceHub(province) | Place::Supervisor(Some(province)) => covers(province),
        Place::CountyHub(county) => covers(county),
        Place::CountyOffice(..) | Place::Township(_) => false,
    }
}

/// The neighbours of `node` in the tree that are on the route: where a node sends
/// a case. A hub sends it down to each child whose region covers a route member and
/// up when a member lies outside its own region; an office sends it up to its
/// county hub. Empty when `node` itself is off the route.
pub fn next_hops(node: &Place, route: &CaseRoute) -> Vec<Place> {
    if !on_route(node, route) {
        return Vec::new();
    }
    let mut hops: Vec<Place> = Vec::with_capacity(4);
    if let Some(parent) = node.parent()
        && on_route(&parent, route)
    {
        hops.push(parent);
    }
    // The only children that can be on the route are those on the paths to the
    // members, so they are found from the members rather than from a list of
    // children.
    for member in route.members() {
        let mut child = member;
        while let Some(parent) = child.parent() {
            if parent == *node {
                if !hops.contains(&child) {
                    hops.push(child);
                }
                break;
            }
            child = parent;
        }
    }
    hops.sort();
    hops
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn code(s: &str) -> DivisionCode {
        DivisionCode::parse(s).unwrap()
    }

    /// Township codes from a small alphabet, so that strategies often produce two
    /// townships of one county or one province.
    fn arb_township() -> impl Strategy<Value = DivisionCode> {
        (
            prop::sample::select(vec!["13", "44", "11"]),
            prop::sample::select(vec!["01", "02"]),
            prop::sample::select(vec!["02", "04"]),
            prop::sample::select(vec!["001", "002", "003"]),
        )
            .prop_map(|(p, pre, c, t)| code(&format!("{p}{pre}{c}{t}")))
    }

    fn arb_route() -> impl Strategy<Value = CaseRoute> {
        (arb_township(), arb_township()).prop_map(|(a, d)| CaseRoute::new(a, d).unwrap())
    }

    /// Every place of the small universe the strategies draw from.
    fn universe() -> Vec<Place> {
        let mut places = vec![Place::National];
        for p in ["13", "44", "11"] {
            places.push(Place::ProvinceHub(code(p)));
            for pre in ["01", "02"] {
                for c in ["02", "04"] {
                    let county = code(&format!("{p}{pre}{c}"));
                    places.push(Place::CountyHub(county));
                    places.push(Place::CountyOffice(county, CountyOffice::Dpf));
                    places.push(Place::CountyOffice(county, CountyOffice::CivilAffairs));
                    for t in ["001", "002", "003"] {
                        places.push(Place::Township(code(&format!("{p}{pre}{c}{t}"))));
                    }
                }
            }
        }
        places
    }

    /// The path between two places in the tree, both ends included: the oracle
    /// `on_route` is checked against.
    fn path(a: Place, b: Place) -> BTreeSet<Place> {
        let ancestors = |mut p: Place| {
            let mut out = vec![p];
            while let Some(parent) = p.parent() {
                out.push(parent);
                p = parent;
            }
            out
        };
        let (up_a, up_b) = (ancestors(a), ancestors(b));
        let common: BTreeSet<Place> = up_a.iter().copied().filter(|p| up_b.contains(p)).collect();
        let lca = *up_a.iter().find(|p| common.contains(p)).unwrap();
        let mut out = BTreeSet::new();
        for chain in [up_a, up_b] {
            for p in chain {
                out.insert(p);
                if p == lca {
                    break;
                }
            }
        }
        out
    }

    fn oracle(route: &CaseRoute) -> BTreeSet<Place> {
        let members = route.members();
        let mut out = BTreeSet::new();
        for a in &members {
            for b in &members {
                out.extend(path(*a, *b));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn on_route_is_the_subtree_joining_the_members(route in arb_route()) {
            let expected = oracle(&route);
            for place in universe() {
                prop_assert_eq!(on_route(&place, &route), expected.contains(&place), "{} {:?}", place, route);
            }
            prop_assert_eq!(route.nodes().into_iter().collect::<BTreeSet<_>>(), expected);
        }

        #[test]
        fn next_hops_are_on_route_neighbours_and_symmetric(route in arb_route()) {
            for place in universe() {
                let hops = next_hops(&place, &route);
                if !on_route(&place, &route) {
                    prop_assert!(hops.is_empty());
                    continue;
                }
                for hop in &hops {
                    prop_assert!(on_route(hop, &route));
                    prop_assert!(hop.parent() == Some(place) || place.parent() == Some(*hop));
                    prop_assert!(next_hops(hop, &route).contains(&place));
                }
            }
        }

        #[test]
        fn forwarding_from_any_member_reaches_exactly_the_route(route in arb_route()) {
            for start in route.members() {
                let mut seen = BTreeSet::from([start]);
                let mut queue = vec![start];
                while let Some(at) = queue.pop() {
                    for hop in next_hops(&at, &route) {
                        if seen.insert(hop) {
                            queue.push(hop);
                        }
                    }
                }
                prop_assert_eq!(&seen, &oracle(&route));
            }
        }

        #[test]
        fn no_node_holds_a_case_outside_its_region(route in arb_route()) {
            for place in universe() {
                if !on_route(&place, &route) {
                    continue;
                }
                match place {
                    Place::Township(t) => prop_assert!(t == route.acceptance() || t == route.domicile()),
                    Place::ProvinceHub(p) => {
                        prop_assert!(p.covers(&route.acceptance()) || p.covers(&route.domicile()))
                    }
                    Place::CountyHub(c) => {
                        prop_assert!(c.covers(&route.acceptance()) || c.covers(&route.domicile()))
                    }
                    Place::CountyOffice(c, _) => prop_assert!(c.covers(&route.domicile())),
                    Place::National => {}
                    Place::Supervisor(_) => prop_assert!(false, "a supervisor holds a case"),
                }
            }
        }

        /// Attestations climb from any office of a case to the national hub
        /// through hubs that hold them, and reach exactly the supervisors of
        /// the two provinces and the country: following `attestation_on_route`
        /// from each member's parent upward and from there down to supervisors
        /// reaches every place that holds them, and no office.
        #[test]
        fn attestations_reach_the_supervisors_of_both_ends_and_no_office(route in arb_route()) {
            let (a, d) = (route.acceptance(), route.domicile());
            let supervisors = [Place::Supervisor(None), Place::Supervisor(Some(a.province())),
                Place::Supervisor(Some(d.province()))];
            for place in universe().into_iter().chain(supervisors) {
                let holds = attestation_on_route(&place, &route);
                match place {
                    Place::Township(_) | Place::CountyOffice(..) => prop_assert!(!holds),
                    Place::Supervisor(None) | Place::National => prop_assert!(holds),
                    Place::Supervisor(Some(p)) | Place::ProvinceHub(p) => {
                        prop_assert_eq!(holds, p == a.province() || p == d.province())
                    }
                    Place::CountyHub(c) => prop_assert_eq!(
                        holds,
                        c.covers(&a) || c.covers(&d)
                    ),
                }
                // Every holder's parent holds them too (the path up is unbroken).
                if holds && let Some(parent) = place.parent() {
                    prop_assert!(attestation_on_route(&parent, &route));
                }
            }
            // A province supervisor elsewhere holds none.
            prop_assert!(!attestation_on_route(&Place::Supervisor(Some(code("11"))), &route)
                || a.province() == code("11") || d.province() == code("11"));
        }

        #[test]
        fn a_hub_forwards_down_to_children_covering_a_member_and_up_otherwise(route in arb_route()) {
            for place in universe().into_iter().filter(|p| p.is_hub() && on_route(p, &route)) {
                let hops = next_hops(&place, &route);
                let members = route.members();
                let outside = members.iter().any(|m| !place.contains(m));
                prop_assert_eq!(place.parent().is_some_and(|p| hops.contains(&p)), outside);
                for hop in hops.iter().filter(|h| h.parent() == Some(place)) {
                    prop_assert!(members.iter().any(|m| hop.contains(m)));
                }
            }
        }
    }

    #[test]
    fn example_routes() {
        let show = |a: &str, d: &str| {
            let route = CaseRoute::new(code(a), code(d)).unwrap();
            route
                .nodes()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        // Local application: the township, its county offices and the county hub.
        expect_test::expect!["hub-130102 130102-dpf 130102-ca 130102001"]
            .assert_eq(&show("130102001", "130102001"));
        // Two counties of one province: the province hub joins them.
        expect_test::expect![
            "hub-13 hub-130102 hub-130104 130104-dpf 130104-ca 130102001 130104001"
        ]
        .assert_eq(&show("130102001", "130104001"));
        // Across provinces: the national hub too.
        expect_test::expect![
            "hub-cn hub-13 hub-44 hub-130104 hub-440106 130104-dpf 130104-ca 130104001 440106001"
        ]
        .assert_eq(&show("440106001", "130104001"));
    }

    #[test]
    fn places_from_certificates() {
        assert_eq!(
            Place::from_certificate(Role::Hub, "00").unwrap(),
            Place::National
        );
        assert_eq!(
            Place::from_certificate(Role::Hub, "44").unwrap(),
            Place::ProvinceHub(code("44"))
        );
        assert_eq!(
            Place::from_certificate(Role::CountyDpf, "440106").unwrap(),
            Place::CountyOffice(code("440106"), CountyOffice::Dpf)
        );
        assert!(Place::from_certificate(Role::Township, "440106").is_err());
        assert_eq!(
            Place::from_certificate(Role::Supervisor, "44").unwrap(),
            Place::Supervisor(Some(code("44")))
        );
        assert_eq!(
            Place::from_certificate(Role::Supervisor, "00").unwrap(),
            Place::Supervisor(None)
        );
        assert!(Place::from_certificate(Role::Supervisor, "440106").is_err());
        assert!(Place::from_certificate(Role::Township, "00").is_err());
    }
}
