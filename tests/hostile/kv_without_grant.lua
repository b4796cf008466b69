-- Uses the kv store without a grant.
return kv.put("k", "v")
