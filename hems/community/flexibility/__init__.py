"""The community as one federated power plant toward the grid operator (issue 8): the pure core.

- :mod:`.model`: a home's flexibility (baseline, up/down merit orders), read from its bid curve; the
  operator's request.
- :mod:`.dispatch`: the least-cost split of a request among the homes, and re-dispatch after failures.
- :mod:`.offers`: the homes' flexibility pooled into offers of a minimum size.
- :mod:`.delivery`: baselines and measured delivery, shortfalls and penalties.
- :mod:`.revenue`: revenue sharing policies, penalty allocation and the settlement of a request.

Everything is synchronous and pure, in integers (Wh, µ¤/kWh, n¤). docs/flexibility.md has the rules
and says what is not wired into the community manager yet.
"""

from hems.community.flexibility.delivery import (DeliveryReport, HomeDelivery, SlotDelivery, baseline_from_history,
                                                 declared_baselines, measure_delivery)
from hems.community.flexibility.dispatch import Dispatch, HomeCommitment, SlotDispatch, redispatch, split_request
from hems.community.flexibility.model import (Direction, FlexibilityRequest, FlexibilitySegment, HomeFlexibility,
                                              direction_of, flexibility_from_curve)
from hems.community.flexibility.offers import AggregatedOffers, FlexibilityOffer, UnofferedRemainder, aggregate_offers
from hems.community.flexibility.revenue import (HomeSettlement, RevenuePolicy, Settlement, SlotSettlement,
                                                allocate_penalty, settle_request, share_revenue)

__all__ = ["AggregatedOffers", "DeliveryReport", "Direction", "Dispatch", "FlexibilityOffer", "FlexibilityRequest",
           "FlexibilitySegment", "HomeCommitment", "HomeDelivery", "HomeFlexibility", "HomeSettlement",
           "RevenuePolicy", "Settlement", "SlotDelivery", "SlotDispatch", "SlotSettlement", "UnofferedRemainder",
           "aggregate_offers", "allocate_penalty", "baseline_from_history", "declared_baselines",
           "direction_of", "flexibility_from_curve", "measure_delivery", "redispatch", "settle_request",
           "share_revenue", "split_request"]
