/**
 * The tests that need only a real server as `npm start` runs it, with no flag: the OpenAI routes,
 * fields, tools, the Responses API and its store, echo with max_tokens 0, structured output, huge
 * prompts and the client libraries (openai, the AI SDK, LangChain), each in its own module
 * (`*.suite.ts`), against one server booted once for all of them (test/helpers/shared-server.ts).
 * The modules' tests run one after another, in this order.
 */
import './openai-api.suite.ts'
import './api-fields.suite.ts'
import './api-tools.suite.ts'
import './api-responses.suite.ts'
import './responses-stored.suite.ts'
import './echo-max-tokens-zero.suite.ts'
import './structured-output.suite.ts'
import './structured-output-bench.suite.ts'
import './huge-prompt.suite.ts'
import '../clients/ai-sdk.suite.ts'
import '../clients/langchain.suite.ts'
