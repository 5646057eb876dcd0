"""Worker process of amlbatch's local parallel runner.

The job driver starts one worker per process slot, with the entry script's code directory as the working directory:

    python -u prs_worker.py --entry-script PATH --output-action append_row|summary_only [-- PROGRAM_ARGUMENT ...]

The worker imports the entry script, calls ``init()`` once, then serves ``run(mini_batch)`` calls as an Azure ML
parallel run step does. Requests arrive on stdin, one JSON object per line: ``{"id": k, "items": [absolute paths]}``.
Responses leave on file descriptor 3, one JSON object per line, because stdout and stderr belong to the entry
script and go to the worker's log file. Response types:

    {"type": "ready", "pid": ...}                                        init() returned
    {"type": "init_error", "message": ..., "error_type": ..., "traceback": ...}
                                                                         import or init() failed; the process exits 1
    {"type": "result", "id": k, "rows": [...]}                           append_row: one line of text per element
    {"type": "result", "id": k, "count": n}                              summary_only: number of returned elements
    {"type": "error", "id": k, "message": ..., "error_type": ..., "traceback": ...}
                                                                         run() raised or returned an invalid value

At the end of stdin the worker calls ``shutdown()`` when the script defines it, then exits 0.
"""

import importlib.util
import json
import os
import signal
import sys
import threading
import time
import traceback

RESPONSE_FD = 3
PARENT_CHECK_INTERVAL_SECONDS = 1.0
OUTPUT_ACTIONS = ("append_row", "summary_only")


class InvalidRunResult(Exception):
    """Raised when run() returns something that an Azure ML parallel run step rejects."""


def parse_arguments(argv):
    """Return (entry script path, output action, program arguments) from the worker's own command line."""
    options = {}
    program_arguments = []
    index = 0
    while index < len(argv):
        argument = argv[index]
        if argument == "--":
            program_arguments = argv[index + 1:]
            break
        if argument in ("--entry-script", "--output-action") and index + 1 < len(argv):
            options[argument] = argv[index + 1]
            index += 2
            continue
        sys.exit(f"prs_worker.py: unknown argument {argument!r}; usage: --entry-script PATH "
                 f"--output-action {'|'.join(OUTPUT_ACTIONS)} [-- PROGRAM_ARGUMENT ...]")

    entry_script = options.get("--entry-script")
    output_action = options.get("--output-action")
    if entry_script is None or output_action not in OUTPUT_ACTIONS:
        sys.exit(f"prs_worker.py: --entry-script PATH and --output-action {'|'.join(OUTPUT_ACTIONS)} are required")
    return os.path.abspath(entry_script), output_action, program_arguments


def open_protocol_channels():
    """Take stdin and fd 3 away from the entry script and return (request reader, response writer).

    The request pipe moves to a private descriptor and stdin becomes /dev/null, so a script that reads stdin cannot
    consume requests. Both protocol descriptors are made non-inheritable, so programs that the script starts with
    exec do not keep the pipes open after this process exits.
    """
    try:
        os.fstat(RESPONSE_FD)
    except OSError:
        sys.exit("prs_worker.py: file descriptor 3 is not open; the job driver starts this worker with a response pipe "
                 "on descriptor 3, so run it through the driver")

    request_fd = os.dup(0)
    os.set_inheritable(request_fd, False)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.set_inheritable(RESPONSE_FD, False)

    return os.fdopen(request_fd, "rb"), os.fdopen(RESPONSE_FD, "wb")


def watch_parent(parent_pid):
    """Kill this worker's process group once the driver that started it is gone.

    A driver killed with SIGKILL cannot stop its workers, and a run() call that hangs would never notice the
    closed pipes. The driver starts each worker as the leader of a new process group, so killing the group also
    ends programs that the entry script started. A worker started another way only exits itself.
    """
    while True:
        time.sleep(PARENT_CHECK_INTERVAL_SECONDS)
        if os.getppid() == parent_pid:
            continue
        if os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)


def send(writer, message):
    writer.write(json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n")
    writer.flush()


def describe_exception(error):
    return {
        "error_type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }


def load_entry_script(entry_script, program_arguments):
    """Import the entry script as a module after setting sys.path and sys.argv as the script expects them."""
    # Python put this shim's folder first on sys.path; the entry script must not import from it.
    shim_directory = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0]) == shim_directory:
        del sys.path[0]
    code_directory = os.getcwd()
    script_directory = os.path.dirname(entry_script)
    for folder in (script_directory, code_directory):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    sys.argv = [entry_script, *program_arguments]

    module_name = os.path.splitext(os.path.basename(entry_script))[0]
    spec = importlib.util.spec_from_file_location(module_name, entry_script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import entry script {entry_script}: Python does not recognize it as a module; "
                          f"give entryScript a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def find_missing_functions(module):
    return [name for name in ("init", "run") if not callable(getattr(module, name, None))]


def to_row(element):
    """Convert one element of run()'s return value to a line of text, as append_row does."""
    if isinstance(element, str):
        return element
    if isinstance(element, (dict, list)):
        return json.dumps(element, ensure_ascii=False)
    return str(element)


def to_rows(result, entry_script):
    """Return run()'s return value as a list of lines, or raise InvalidRunResult."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(result, pandas.DataFrame):
        return [" ".join(str(value) for value in row) for row in result.itertuples(index=False, name=None)]
    if isinstance(result, (list, tuple)):
        return [to_row(element) for element in result]
    raise InvalidRunResult(f"run() in {entry_script} returned {type(result).__name__}; it must return a list, tuple "
                           f"or pandas DataFrame with one element per successfully processed mini-batch item")


def count_rows(result, entry_script):
    """Return how many items run() reports as processed, or raise InvalidRunResult."""
    pandas = sys.modules.get("pandas")
    if isinstance(result, (list, tuple)) or (pandas is not None and isinstance(result, pandas.DataFrame)):
        return len(result)
    raise InvalidRunResult(f"run() in {entry_script} returned {type(result).__name__}; it must return a list, tuple "
                           f"or pandas DataFrame with one element per successfully processed mini-batch item")


def check_single_lines(rows, entry_script):
    for index, row in enumerate(rows):
        if "\n" in row or "\r" in row:
            raise InvalidRunResult(f"run() in {entry_script} returned a row with a line break at index {index} "
                                   f"({row[:80]!r}); append_row writes each element as one line, so return single-line "
                                   f"text, for example json.dumps(value)")


def serve(module, entry_script, output_action, requests, responses):
    run = module.run
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        request_id = request["id"]
        try:
            result = run(request["items"])
            if output_action == "append_row":
                rows = to_rows(result, entry_script)
                check_single_lines(rows, entry_script)
                response = {"type": "result", "id": request_id, "rows": rows}
            else:
                response = {"type": "result", "id": request_id, "count": count_rows(result, entry_script)}
            encoded = json.dumps(response, ensure_ascii=False).encode("utf-8") + b"\n"
        except InvalidRunResult as error:
            send(responses, {"type": "error", "id": request_id, "error_type": "InvalidRunResult",
                             "message": str(error), "traceback": None})
            continue
        except UnicodeEncodeError as error:
            send(responses, {"type": "error", "id": request_id, "error_type": "InvalidRunResult",
                             "message": f"run() in {entry_script} returned text that is not valid Unicode ({error}); "
                                        f"return str values without lone surrogates",
                             "traceback": None})
            continue
        except Exception as error:  # run() may raise anything; the driver records it and retries the mini-batch.
            send(responses, {"type": "error", "id": request_id, **describe_exception(error)})
            continue
        responses.write(encoded)
        responses.flush()


def main():
    entry_script, output_action, program_arguments = parse_arguments(sys.argv[1:])
    requests, responses = open_protocol_channels()
    threading.Thread(target=watch_parent, args=(os.getppid(),), name="amlbatch-parent-watch", daemon=True).start()

    try:
        module = load_entry_script(entry_script, program_arguments)
    except BaseException as error:  # SyntaxError, SystemExit and ImportError all mean the script cannot start.
        send(responses, {"type": "init_error", **describe_exception(error),
                         "message": f"importing entry script {entry_script} failed: {type(error).__name__}: {error}"})
        return 1

    missing = find_missing_functions(module)
    if missing:
        names = " and ".join(f"{name}()" for name in missing)
        send(responses, {"type": "init_error", "error_type": "InvalidEntryScript", "traceback": None,
                         "message": f"entry script {entry_script} does not define a callable {names}; a parallel "
                                    f"job's entry script must define init() and run(mini_batch)"})
        return 1

    try:
        module.init()
    except BaseException as error:  # the driver fails the job on any init() failure, SystemExit included.
        send(responses, {"type": "init_error", **describe_exception(error),
                         "message": f"init() in entry script {entry_script} raised {type(error).__name__}: {error}"})
        return 1
    send(responses, {"type": "ready", "pid": os.getpid()})

    serve(module, entry_script, output_action, requests, responses)

    shutdown = getattr(module, "shutdown", None)
    if callable(shutdown):
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
