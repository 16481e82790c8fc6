-- Argo CD health check for bullflow.io/WorkerPool (Lua 5.1, as Argo CD's gopher-lua runs it),
-- from its conditions:
--   Ready=True                               -> Healthy (Degraded if ScalingActive=False:
--                                               the backlog cannot be read, scaling is blind)
--   Ready=False, ReplicasNotReady            -> Progressing (workers are starting)
--   Ready=False, any other reason            -> Degraded (InvalidSpec, ScaleTargetNotFound, ...)
--   no Ready condition / older generation    -> Progressing
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

-- Ready=False reasons that are transient: replicas are on their way.
local progressing = {ReplicasNotReady = true}

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the bullflow operator"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the bullflow operator"
  return hs
end

if ready.status == "False" then
  if progressing[ready.reason] then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  hs.message = describe(ready)
  return hs
end

local active = condition(status.conditions, "ScalingActive")
if active ~= nil and active.status == "False" then
  hs.status = "Degraded"
  hs.message = "Scaling inactive: " .. describe(active)
  return hs
end

hs.status = "Healthy"
hs.message = describe(ready)
local limited = condition(status.conditions, "ScalingLimited")
if limited ~= nil and limited.status == "True" then
  hs.message = hs.message .. "; scaling limited: " .. describe(limited)
end
return hs
