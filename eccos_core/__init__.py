"""eccos: route every LLM call to the cheapest model that will still answer it well."""
