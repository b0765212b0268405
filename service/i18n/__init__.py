"""System reasons in the community's language (SPEC section 9).

`system_reason(language, key, **params)` is the one catalogue of the reasons the
service writes itself (reasons.py); a community's language is set when it is created
(`POST /v1/communities` `language`, default zh-CN) and reached through the rule book
(`RuleBook.language`, cached with the rules) or, below it, `community_language`.
"""

from service.i18n.reasons import DEFAULT_LANGUAGE as DEFAULT_LANGUAGE
from service.i18n.reasons import LANGUAGES as LANGUAGES
from service.i18n.reasons import Language as Language
from service.i18n.reasons import ReasonKey as ReasonKey
from service.i18n.reasons import basket as basket
from service.i18n.reasons import reversal_reason as reversal_reason
from service.i18n.reasons import system_reason as system_reason
from service.i18n.reasons import yuan as yuan
from service.i18n.store import community_language as community_language
