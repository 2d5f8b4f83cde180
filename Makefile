# The README's commands. Each target sets up what it needs first, so a fresh clone works.
.PHONY: setup demo test bench lint docs clean

# pytest workers for `make test`: one per core by default (`make test TEST_WORKERS=0` runs in one process).
TEST_WORKERS ?= auto


setup:
	@scripts/bootstrap.sh >/dev/null

demo:
	@UV="$$(scripts/bootstrap.sh | tail -n 1)" && "$$UV" run --locked bankgrowth demo

test:
	@UV="$$(scripts/bootstrap.sh --test | tail -n 1)" && \
	  "$$UV" run --locked ruff check . && "$$UV" run --locked ruff format --check . && \
	  "$$UV" run --locked mypy && "$$UV" run --locked lint-imports && \
	  "$$UV" run --locked pytest -n $(TEST_WORKERS) --dist loadfile

bench:
	@UV="$$(scripts/bootstrap.sh | tail -n 1)" && "$$UV" run --locked python -m benchmarks.run && \
	  "$$UV" run --locked python -m benchmarks.insight && "$$UV" run --locked python -m benchmarks.rights && \
	  "$$UV" run --locked python -m benchmarks.audiences && "$$UV" run --locked python -m benchmarks.campaigns

lint:
	@UV="$$(scripts/bootstrap.sh | tail -n 1)" && "$$UV" run --locked ruff check . && \
	  "$$UV" run --locked ruff format --check . && "$$UV" run --locked mypy && \
	  "$$UV" run --locked lint-imports

docs:
	@UV="$$(scripts/bootstrap.sh | tail -n 1)" && "$$UV" run --locked bankgrowth schema docs --out docs/data-model.md

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
