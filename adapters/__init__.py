"""Agency adapters: the edge to Axis (`adapters.edge`), the Python SDK (`adapters.client.AgencyClient`) and the
watched-folder adapter (`adapters.folder`)."""
import logging

# A library never configures logging; this only stops Python's last-resort
# handler from printing our warnings when the application has not set any up.
logging.getLogger("adapters").addHandler(logging.NullHandler())
