#!/usr/bin/env python3
"""Deploy SchemaRegistry and EAS on a local ganache and print their addresses.

    scripts/evm-test-chain.py RPC_URL

Uses only the standard library: ganache unlocks the accounts it is started with,
so `eth_sendTransaction` from its second account (the first is the server's wallet,
whose nonces then start at 0) needs no signing here. The compiled
artifacts come from crates/attestix-server/tests/evm/node_modules (`npm ci` there).
Prints `REGISTRY EAS` on one line.
"""

import json
import pathlib
import sys
import time
import urllib.request

ARTIFACTS = (
    pathlib.Path(__file__).resolve().parent.parent
    / "crates/attestix-server/tests/evm/node_modules"
    / "@ethereum-attestation-service/eas-contracts/artifacts/contracts"
)


def rpc(url, method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    if "error" in answer:
        raise SystemExit(f"{method} failed: {answer['error']}")
    return answer["result"]


def deploy(url, deployer, contract, constructor_args=""):
    artifact = json.loads((ARTIFACTS / f"{contract}.sol/{contract}.json").read_text())
    code = artifact["bytecode"] + constructor_args
    tx = rpc(url, "eth_sendTransaction", [{"from": deployer, "data": code, "gas": "0x7A1200"}])
    for _ in range(600):
        receipt = rpc(url, "eth_getTransactionReceipt", [tx])
        if receipt:
            if receipt["status"] != "0x1":
                raise SystemExit(f"deploying {contract} reverted")
            return receipt["contractAddress"]
        time.sleep(0.1)
    raise SystemExit(f"deploying {contract} was not mined within a minute")


def main():
    url = sys.argv[1]
    deployer = rpc(url, "eth_accounts", [])[1]
    registry = deploy(url, deployer, "SchemaRegistry")
    # EAS's constructor takes the registry's address, ABI-encoded as one 32-byte word.
    eas = deploy(url, deployer, "EAS", registry[2:].lower().rjust(64, "0"))
    print(registry, eas)


if __name__ == "__main__":
    main()
