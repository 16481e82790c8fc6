-- Argo CD health check for bullflow.io/CronFlow (Lua 5.1, as Argo CD's gopher-lua runs it).
-- The CronFlow's own health, not its runs' (each run is a Flow with its own health):
--   spec.suspend                             -> Suspended
--   Ready=True                               -> Healthy (message: next and last run)
--   Ready=False (InvalidSchedule, UnknownTimeZone, TemplateNotFound, InvalidSpec, ...)
--                                            -> Degraded
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

local status = obj.status
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: no new runs"
  return hs
end
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
  hs.status = "Degraded"
  hs.message = ready.reason
  if ready.message ~= nil and ready.message ~= "" then
    hs.message = ready.reason .. ": " .. ready.message
  end
  return hs
end

hs.status = "Healthy"
hs.message = "Next run " .. (status.nextScheduleTime or "not scheduled")
if status.lastScheduleTime ~= nil then
  hs.message = hs.message .. "; last run " .. status.lastScheduleTime
end
if status.activeCount ~= nil and status.activeCount > 0 then
  hs.message = hs.message .. "; " .. status.activeCount .. " active"
end
return hs
