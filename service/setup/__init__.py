"""Setup: communities, households and members (SPEC section 4, "Setup").

The use cases are in `service.py` (and, for members who move out or change household,
`lifecycle.py`), their SQL in `store.py`; they are named here too, so that
`from service import setup` reads `setup.create_member(…)`.
"""

from service.setup.lifecycle import ClosedMember as ClosedMember
from service.setup.lifecycle import CloseTerms as CloseTerms
from service.setup.lifecycle import HouseholdHistory as HouseholdHistory
from service.setup.lifecycle import check_open as check_open
from service.setup.lifecycle import close_member as close_member
from service.setup.lifecycle import explained as explained
from service.setup.lifecycle import household_history as household_history
from service.setup.lifecycle import move_member as move_member
from service.setup.lifecycle import refuse_closed as refuse_closed
from service.setup.lifecycle import refusing_closed as refusing_closed
from service.setup.service import Community as Community
from service.setup.service import Household as Household
from service.setup.service import Member as Member
from service.setup.service import check_timezone as check_timezone
from service.setup.service import community_ids as community_ids
from service.setup.service import create_community as create_community
from service.setup.service import create_household as create_household
from service.setup.service import create_member as create_member
from service.setup.service import get_community as get_community
from service.setup.service import get_member as get_member
