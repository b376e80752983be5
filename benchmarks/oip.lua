-- wrk script: POST precomputed Open Inference Protocol bodies in turn and check each answer.
--
--   wrk ... -s oip.lua URL -- BODIES EXPECTED PATH KEY RTOL ATOL [LANE]
--
-- BODIES holds one JSON request a line, each with "id" = its line number from 0; with LANE
-- "binary", each line is the JSON header, a tab and the hex of the tensor bytes, sent as
-- Triton's binary tensor extension (Inference-Header-Content-Length). EXPECTED
-- holds, on the same line, the output numbers onnxruntime gives in-process. An answer counts
-- as correct when it is a 200 that echoes a known id and whose first output "data" array
-- equals the expected numbers within ATOL + RTOL * |expected|. KEY "-" sends no
-- Authorization header. done() prints one line: "BENCH_RESULT {json}".

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

local function read_lines(path)
   local lines = {}
   for line in io.lines(path) do
      if line ~= "" then lines[#lines + 1] = line end
   end
   return lines
end

local function numbers(text)
   local values = {}
   for token in text:gmatch("[^,%s]+") do
      values[#values + 1] = tonumber(token)
   end
   return values
end

function init(args)
   local bodies = read_lines(args[1])
   local expected_lines = read_lines(args[2])
   local path, key = args[3], args[4]
   rtol, atol = tonumber(args[5]), tonumber(args[6])
   expected = {}
   for index, line in ipairs(expected_lines) do
      expected[tostring(index - 1)] = numbers(line)
   end
   local binary = args[7] == "binary"
   requests = {}
   for index, body in ipairs(bodies) do
      local headers = { ["Content-Type"] = "application/json" }
      if binary then
         local head, hex = body:match("^([^\t]*)\t(%x*)$")
         body = head .. hex:gsub("..", function(pair) return string.char(tonumber(pair, 16)) end)
         headers["Content-Type"] = "application/octet-stream"
         headers["Inference-Header-Content-Length"] = tostring(#head)
      end
      if key ~= "-" then headers["Authorization"] = "Bearer " .. key end
      requests[index] = wrk.format("POST", path, headers, body)
   end
   -- Threads start at different bodies so that concurrent requests differ.
   cursor = (thread_index * 7) % #requests
   correct, wrong, non_200, first_error = 0, 0, 0, ""
end

function request()
   cursor = cursor % #requests + 1
   return requests[cursor]
end

local function check(body)
   local id = body:match('"id"%s*:%s*"([^"]*)"')
   local want = id and expected[id]
   if not want then return false end
   local outputs = body:find('"outputs"', 1, true)
   local data = outputs and body:match('"data"%s*:%s*%[([^%]]*)%]', outputs)
   if not data then return false end
   local got = numbers(data)
   if #got ~= #want then return false end
   for index, value in ipairs(want) do
      local actual = got[index]
      if actual == nil or math.abs(actual - value) > atol + rtol * math.abs(value) then
         return false
      end
   end
   return true
end

local function note_error(status, body)
   if first_error == "" then
      first_error = status .. " " .. body:sub(1, 200)
   end
end

function response(status, headers, body)
   if status ~= 200 then
      non_200 = non_200 + 1
      note_error(status, body)
   elseif check(body) then
      correct = correct + 1
   else
      wrong = wrong + 1
      note_error(status, body)
   end
end

local function json_string(text)
   local escaped = text:gsub('[%c"\\]', function(char)
      return string.format("\\u%04x", char:byte())
   end)
   return '"' .. escaped .. '"'
end

function done(summary, latency, requests)
   local totals = { correct = 0, wrong = 0, non_200 = 0 }
   local sample = ""
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + thread:get(name)
      end
      if sample == "" then sample = thread:get("first_error") end
   end
   local errors = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'BENCH_RESULT {"duration_s":%.3f,"responses":%d,"correct":%d,"wrong":%d,"non_200":%d,'
         .. '"socket_errors":%d,"timeouts":%d,"correct_per_s":%.2f,"p50_ms":%.3f,'
         .. '"p99_ms":%.3f,"mean_ms":%.3f,"max_ms":%.3f,"first_error":%s}\n',
      seconds, summary.requests, totals.correct, totals.wrong, totals.non_200,
      errors.connect + errors.read + errors.write, errors.timeout,
      totals.correct / seconds,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      latency.mean / 1000, latency.max / 1000, json_string(sample)))
end
