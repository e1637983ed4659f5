#!/usr/bin/env bash
# A tiny MCP server over stdio (newline-delimited JSON-RPC 2.0) in bash + jq:
# one tool, `add`, that sums two numbers. It runs inside the session's sandbox,
# as the agent user; each call notes the uid it ran as in /tmp/mcp-calc.uid.
set -u
while IFS= read -r line; do
  [ -z "$line" ] && continue
  id=$(jq -c '.id // empty' <<<"$line")
  method=$(jq -r '.method // empty' <<<"$line")
  [ -z "$id" ] && continue # notifications (notifications/initialized) need no answer
  case "$method" in
    initialize)
      version=$(jq -r '.params.protocolVersion // "2025-06-18"' <<<"$line")
      jq -cn --argjson id "$id" --arg v "$version" \
        '{jsonrpc:"2.0",id:$id,result:{protocolVersion:$v,capabilities:{tools:{}},serverInfo:{name:"calc",version:"1.0.0"}}}' ;;
    tools/list)
      jq -cn --argjson id "$id" '{jsonrpc:"2.0",id:$id,result:{tools:[{name:"add",description:"Adds two numbers.",
        inputSchema:{type:"object",properties:{a:{type:"number"},b:{type:"number"}},required:["a","b"]}}]}}' ;;
    tools/call)
      id -u > /tmp/mcp-calc.uid
      sum=$(jq '.params.arguments.a + .params.arguments.b' <<<"$line")
      jq -cn --argjson id "$id" --arg text "sum=$sum uid=$(id -u)" \
        '{jsonrpc:"2.0",id:$id,result:{content:[{type:"text",text:$text}]}}' ;;
    ping) jq -cn --argjson id "$id" '{jsonrpc:"2.0",id:$id,result:{}}' ;;
    *) jq -cn --argjson id "$id" --arg m "$method" '{jsonrpc:"2.0",id:$id,error:{code:-32601,message:("no method " + $m)}}' ;;
  esac
done
