#!/bin/bash
# acme-cli: Acme's API from the command line, for the support agent.
#   acme-cli.sh user <email>   account of a customer
#   acme-cli.sh plans          plans and their monthly allowance
# Needs ACME_API_URL and ACME_API_TOKEN in the environment. Prints JSON.
set -euo pipefail
: "${ACME_API_URL:?ACME_API_URL is not set}"
: "${ACME_API_TOKEN:?ACME_API_TOKEN is not set}"

case "${1:-}" in
  user)
    email="${2:?usage: acme-cli.sh user <email>}"
    curl -sS --fail-with-body -G -H "Authorization: Bearer $ACME_API_TOKEN" \
      --data-urlencode "email=$email" "$ACME_API_URL/users"
    ;;
  plans)
    curl -sS --fail-with-body -H "Authorization: Bearer $ACME_API_TOKEN" "$ACME_API_URL/plans"
    ;;
  *)
    echo '{"error":"usage: acme-cli.sh user <email> | plans"}'
    exit 2
    ;;
esac
