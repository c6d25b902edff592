"""The hub: intake, verification, routing, receipts. Stateless; run as many as the store allows."""
from axis.hub.hub import Hub, HubSettings
from axis.hub.intake import Outcome, Submission
from axis.hub.verification import TrustSettings

__all__ = ["Hub", "HubSettings", "Outcome", "Submission", "TrustSettings"]
