"""Writes Sources/StripeAPI/Resources/stripe-definitions.json: Stripe's own definitions at the pinned API version.

Read from the pinned `stripe` Python package (scripts/requirements-test.txt), which Stripe generates from its OpenAPI
spec: for every endpoint the client or the stand-in uses, its method, path, parameters (nested, with array and hash
shapes), the required ones and the enum values; for every resource we decode or emit, its fields and their types.

Usage: .venv/bin/python scripts/gen-stripe-definitions.py [--check]
  --check  writes nothing; exits 1 when the committed file differs from a fresh generation.
Moving the pin: change stripe== in scripts/requirements-test.txt, reinstall .venv, run this script, commit.
"""
import ast
import json
import os
import sys

import stripe

ROOT = os.path.dirname(os.path.abspath(stripe.__file__))
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "StripeAPI", "Resources",
                   "stripe-definitions.json")

# Every endpoint the client sends or the stand-in answers: (method, Stripe's path template).
ENDPOINTS = [
    ("post", "/v1/customers"),
    ("get", "/v1/customers/{customer}"),
    ("post", "/v1/customers/{customer}"),
    ("get", "/v1/checkout/sessions/{session}"),
    ("post", "/v1/checkout/sessions"),
    ("post", "/v1/checkout/sessions/{session}/expire"),
    ("post", "/v1/billing_portal/sessions"),
    ("get", "/v1/subscriptions/{subscription_exposed_id}"),
    ("post", "/v1/subscriptions/{subscription_exposed_id}"),
    ("delete", "/v1/subscriptions/{subscription_exposed_id}"),
    ("get", "/v1/subscription_schedules/{schedule}"),
    ("post", "/v1/subscription_schedules/{schedule}/release"),
    ("post", "/v1/payment_intents"),
    ("get", "/v1/payment_intents/{intent}"),
    ("post", "/v1/payment_intents/{intent}/confirm"),
    ("get", "/v1/setup_intents/{intent}"),
    ("get", "/v1/payment_methods/{payment_method}"),
    ("get", "/v1/charges/{charge}"),
    ("post", "/v1/refunds"),
    ("get", "/v1/invoices/{invoice}"),
    ("get", "/v1/invoice_payments"),
    ("get", "/v1/events"),
    ("post", "/v1/test_helpers/test_clocks"),
    ("get", "/v1/test_helpers/test_clocks/{test_clock}"),
    ("post", "/v1/test_helpers/test_clocks/{test_clock}/advance"),
    ("delete", "/v1/test_helpers/test_clocks/{test_clock}"),
]

# Every resource the client decodes or the stand-in emits: object name -> (module file, class).
RESOURCES = {
    "customer": ("_customer.py", "Customer"),
    "checkout.session": ("checkout/_session.py", "Session"),
    "billing_portal.session": ("billing_portal/_session.py", "Session"),
    "subscription": ("_subscription.py", "Subscription"),
    "subscription_item": ("_subscription_item.py", "SubscriptionItem"),
    "subscription_schedule": ("_subscription_schedule.py", "SubscriptionSchedule"),
    "price": ("_price.py", "Price"),
    "plan": ("_plan.py", "Plan"),
    "invoice": ("_invoice.py", "Invoice"),
    "line_item": ("_invoice_line_item.py", "InvoiceLineItem"),
    "invoice_payment": ("_invoice_payment.py", "InvoicePayment"),
    "payment_intent": ("_payment_intent.py", "PaymentIntent"),
    "payment_method": ("_payment_method.py", "PaymentMethod"),
    "setup_intent": ("_setup_intent.py", "SetupIntent"),
    "charge": ("_charge.py", "Charge"),
    "refund": ("_refund.py", "Refund"),
    "dispute": ("_dispute.py", "Dispute"),
    "event": ("_event.py", "Event"),
    "test_helpers.test_clock": ("test_helpers/_test_clock.py", "TestClock"),
}

OPTION_KEYS = None  # RequestOptions' keys: client options, not API parameters.


def parse(path):
    with open(os.path.join(ROOT, path)) as source:
        return ast.parse(source.read())


def literal_values(node):
    elements = node.elts if isinstance(node, ast.Tuple) else [node]
    return [element.value for element in elements]


class Types:
    """Turns an annotation into a type description; `resolve` maps a class name to a key of `self.named`."""

    def __init__(self, resolve):
        self.resolve = resolve

    def of(self, node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.of(ast.parse(node.value, mode="eval").body)
        if isinstance(node, ast.Constant) and node.value is None:
            return {"kind": "null"}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.union(self.operands(node))
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Attribute):
            return self.name(node.attr)
        if isinstance(node, ast.Subscript):
            head = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            inner = node.slice
            if head in ("Optional",):
                described = dict(self.of(inner))
                described["nullable"] = True
                return described
            if head in ("NotRequired", "Required"):
                return self.of(inner)
            if head == "Literal":
                values = literal_values(inner)
                if all(isinstance(value, bool) for value in values):
                    return {"kind": "boolean"}
                if all(isinstance(value, int) for value in values):
                    return {"kind": "integer"}
                return {"kind": "enum", "values": values}
            if head == "List":
                return {"kind": "array", "items": self.of(inner)}
            if head in ("Dict", "Mapping"):
                return {"kind": "map", "values": self.of(inner.elts[1])}
            if head == "UntypedStripeObject":
                return {"kind": "map", "values": self.of(inner)}
            if head == "ExpandableField":
                return {"kind": "expandable", "ref": self.reference(inner)}
            if head == "ListObject":
                return {"kind": "list", "ref": self.reference(inner)}
            if head == "Union":
                return self.union([node])
        raise SystemExit(f"unknown annotation: {ast.unparse(node)}")

    def reference(self, node):
        name = node.value if isinstance(node, ast.Constant) else ast.unparse(node)
        return self.resolve(name)

    def name(self, name):
        simple = {"str": "string", "int": "integer", "bool": "boolean", "float": "number", "Decimal": "decimal",
                  "Any": "any", "StripeObject": "any", "UntypedStripeObject": "any"}
        if name in simple:
            return {"kind": simple[name]}
        return {"kind": "object", "ref": self.resolve(name)}

    def operands(self, node):
        """`a | b | c` and `Union[a, Union[b, c]]` as one flat list of members."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.operands(ast.parse(node.value, mode="eval").body)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.operands(node.left) + self.operands(node.right)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Union":
            return [member for element in node.slice.elts for member in self.operands(element)]
        return [node]

    def union(self, nodes):
        options = []
        for node in [member for node in nodes for member in self.operands(node)]:
            described = self.of(node)
            if described not in options:
                options.append(described)
        nullable = any(option["kind"] == "null" for option in options)
        options = [option for option in options if option["kind"] != "null"]
        # `Literal[""]` beside another type: the parameter may be sent empty to unset it.
        empty = {"kind": "enum", "values": [""]}
        emptyable = empty in options and len(options) > 1
        if emptyable:
            options.remove(empty)
        # stripe-python widens enums with `| str` so that new values do not break it; the API itself refuses them.
        enums = [option for option in options if option["kind"] == "enum"]
        if enums and {"kind": "string"} in options:
            options.remove({"kind": "string"})
        if len(enums) > 1:
            values = [value for option in enums for value in option["values"]]
            options = [option for option in options if option["kind"] != "enum"] + [{"kind": "enum", "values": values}]
        described = dict(options[0]) if len(options) == 1 else {"kind": "union", "of": options}
        if emptyable:
            described["emptyable"] = True
        if nullable:
            described["nullable"] = True
        return described


def param_types(module_path, class_name, named, origins):
    """Adds `class_name` (a TypedDict of `module_path`) and every TypedDict it reaches to `named`; returns its key.

    A class is keyed by its name, unless another module's class has that name already (`SessionCreateParams` is
    both Checkout's and the portal's): then by its module's folder too (`billing_portal.SessionCreateParams`).
    `origins` records which module each key was taken from."""
    tree = parse(module_path)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    folder = os.path.dirname(module_path).removeprefix("params").strip("/").replace("/", ".")

    def key(name):
        if origins.get(name, module_path) == module_path:
            return name
        qualified = f"{folder}.{name}" if folder else name
        if origins.get(qualified, module_path) != module_path:
            raise SystemExit(f"{module_path}: {name} collides with {origins[qualified]}'s even qualified as {qualified}")
        return qualified

    def resolve(name):
        if name not in classes:
            raise SystemExit(f"{module_path}: {name} is not a TypedDict of this module")
        return add(name)

    types = Types(resolve)

    def add(name):
        keyed = key(name)
        if keyed in named:
            return keyed
        origins[keyed] = module_path
        named[keyed] = None
        fields = {}
        for node in classes[name].body:
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            field = node.target.id
            if field in OPTION_KEYS:
                continue
            annotation = node.annotation
            text = ast.unparse(annotation)
            required = not (text.startswith("NotRequired") or text.startswith("'NotRequired") or
                            text.startswith('"NotRequired'))
            described = dict(types.of(annotation))
            described["required"] = required
            fields[field] = described
        named[keyed] = {"fields": dict(sorted(fields.items()))}
        return keyed

    return add(class_name)


def services():
    """(method, path template) -> (params module, params class), from every `_*_service.py`'s `_request` calls."""
    found = {}
    for directory, _, files in os.walk(ROOT):
        for file in files:
            if not (file.startswith("_") and file.endswith("_service.py")):
                continue
            path = os.path.join(directory, file)
            tree = ast.parse(open(path).read())
            imports = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stripe.params"):
                    for alias in node.names:
                        imports[alias.asname or alias.name] = node.module
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef):
                    continue
                params_class = None
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg == "params" and arg.annotation is not None:
                        quoted = [n.value for n in ast.walk(arg.annotation)
                                  if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                        names = [n.id for n in ast.walk(arg.annotation) if isinstance(n, ast.Name)]
                        params_class = (quoted or [n for n in names if n.endswith("Params")] or [None])[0]
                for call in ast.walk(node):
                    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                            and call.func.attr == "_request" and len(call.args) >= 2):
                        if params_class not in imports:
                            continue
                        method = call.args[0].value
                        target = call.args[1]
                        if isinstance(target, ast.Call):
                            target = target.func.value
                        module = imports[params_class].removeprefix("stripe.").replace(".", "/") + ".py"
                        found[(method, target.value)] = (module, params_class)
    return found


def resource_types(named, classes_to_objects):
    for object_name, (module_path, class_name) in RESOURCES.items():
        tree = parse(module_path)
        top = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)

        def walk(node, key, scopes):
            nested = {child.name: child for child in node.body if isinstance(child, ast.ClassDef)}
            scopes = scopes + [(key, nested)]

            def resolve(name):
                for scope_key, scope in reversed(scopes):
                    if name in scope:
                        return f"{scope_key}.{name}"
                return classes_to_objects.get(name, name)

            types = Types(resolve)
            fields = {}
            for child in node.body:
                if isinstance(child, ast.AnnAssign) and isinstance(child.target, ast.Name):
                    if child.target.id.startswith("_") or ast.unparse(child.annotation).startswith("ClassVar"):
                        continue
                    fields[child.target.id] = types.of(child.annotation)
            named[key] = {"fields": dict(sorted(fields.items()))}
            for name, child in nested.items():
                walk(child, f"{key}.{name}", scopes)

        walk(top, object_name, [])


def generate():
    global OPTION_KEYS
    options = parse("_request_options.py")
    request_options = next(node for node in options.body if isinstance(node, ast.ClassDef) and node.name == "RequestOptions")
    OPTION_KEYS = {node.target.id for node in request_options.body if isinstance(node, ast.AnnAssign)}

    known = services()
    endpoints = []
    params = {}
    origins = {}
    for method, path in ENDPOINTS:
        if (method, path) not in known:
            raise SystemExit(f"stripe {stripe.VERSION} has no {method.upper()} {path}")
        module, class_name = known[(method, path)]
        keyed = param_types(module, class_name, params, origins)
        endpoints.append({"method": method.upper(), "path": path, "params": keyed})

    # Resource classes are named by their object type; classes we do not describe stay named as in Python.
    classes_to_objects = {}
    for object_name, (_, class_name) in RESOURCES.items():
        classes_to_objects.setdefault(class_name, object_name)
    classes_to_objects["Session"] = "checkout.session"
    resources = {}
    resource_types(resources, classes_to_objects)

    return {
        "apiVersion": stripe.api_version,
        "source": f"stripe=={stripe.VERSION} (Python), generated from Stripe's OpenAPI spec; MIT licence, Copyright (c) Stripe, Inc.",
        "endpoints": endpoints,
        "params": dict(sorted(params.items())),
        "resources": dict(sorted(resources.items())),
    }


def main():
    text = json.dumps(generate(), indent=1, sort_keys=False) + "\n"
    if "--check" in sys.argv:
        committed = open(OUT).read() if os.path.exists(OUT) else ""
        if committed != text:
            print(f"{OUT} differs from a fresh generation from stripe=={stripe.VERSION}: "
                  "run .venv/bin/python scripts/gen-stripe-definitions.py", file=sys.stderr)
            sys.exit(1)
        print("stripe-definitions.json matches stripe==" + stripe.VERSION)
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as out:
        out.write(text)
    print(f"{len(text)} bytes: {len(ENDPOINTS)} endpoints, {len(RESOURCES)} resources")


main()
