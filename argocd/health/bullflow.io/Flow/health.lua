-- Argo CD health check for bullflow.io/Flow (Lua 5.1, as Argo CD's gopher-lua runs it).
--   Completed                  -> Healthy
--   Pending/Submitted/Running  -> Progressing
--   Failed                     -> Degraded, with the Failed condition's message
--   Stopped                    -> Suspended (stopped on purpose by bullflow.io/stop; a
--                                 bullflow.io/retry runs it again), with who/when
--   Ready=False, InvalidSpec   -> Degraded (also InvalidConnection, NoConnection)
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

-- Not-ready reasons that need a person: the flow will not run until the manifest changes.
local fatal = {InvalidSpec = true, InvalidConnection = true, NoConnection = true}

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the bullflow operator"
  return hs
end

local status = obj.status
local ready = condition(status.conditions, "Ready")
local progress = ""
if status.progress ~= nil then
  progress = " (" .. status.progress .. " jobs done)"
end

if ready ~= nil and ready.status == "False" and fatal[ready.reason] then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end

if status.phase == "Completed" then
  hs.status = "Healthy"
  hs.message = "Completed" .. progress
  return hs
end

if status.phase == "Failed" then
  local failed = condition(status.conditions, "Failed")
  hs.status = "Degraded"
  if failed ~= nil and failed.message ~= nil and failed.message ~= "" then
    hs.message = failed.message
  else
    hs.message = "Failed" .. progress
  end
  return hs
end

if status.phase == "Stopped" then
  local stopped = condition(status.conditions, "Stopped")
  hs.status = "Suspended"
  if stopped ~= nil and stopped.message ~= nil and stopped.message ~= "" then
    hs.message = stopped.message
  else
    hs.message = "Stopped" .. progress
  end
  return hs
end

-- Pending, Submitted, Running (and any phase a newer operator may add).
hs.status = "Progressing"
hs.message = status.phase .. progress
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = hs.message .. ": " .. ready.message
end
local workers = condition(status.conditions, "WorkersAvailable")
-- The operator also puts this message in Ready (reason NoWorkers): say it once.
local said = workers ~= nil and ready ~= nil and ready.message == workers.message
if workers ~= nil and workers.status == "False" and workers.message ~= nil and not said then
  hs.message = hs.message .. "; " .. workers.message
end
return hs
