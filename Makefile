# The README's two commands: `make run` runs the product, `make test` runs every test.
.PHONY: run test bench fuzz schema build release clean-data

run:
	@scripts/install-deps.sh postgres
	swift build --product billingd
	.build/debug/billingd dev

test:
	@scripts/test.sh

bench:
	@bench/run.sh

# Not in CI: FUZZ_REQUESTS (100000) fuzzed requests against a live server, then schemathesis (README "Fuzzing").
fuzz:
	@scripts/fuzz.sh

# db/schema.sql, dumped from a database the migrations made (a test checks the committed file against them).
schema:
	BILLING_WRITE_SCHEMA=1 scripts/test.sh --filter SchemaSnapshotTests

build:
	swift build

release:
	swift build -c release --product billingd

# Stops the local database of `make run` and deletes it.
clean-data:
	scripts/pg.sh stop .data/postgres; rm -rf .data
