import BillingStore
import Testing

@Suite struct SQLScriptTests {
    @Test func splitsOnSemicolons() {
        #expect(SQLScript.split("SELECT 1; SELECT 2;\nSELECT 3") == ["SELECT 1", "SELECT 2", "SELECT 3"])
    }

    @Test func keepsSemicolonsInsideQuotes() {
        let script = "INSERT INTO t VALUES ('a;b', 'it''s; fine'); SELECT \"odd;name\" FROM t;"
        #expect(SQLScript.split(script) == [
            "INSERT INTO t VALUES ('a;b', 'it''s; fine')", "SELECT \"odd;name\" FROM t",
        ])
    }

    @Test func keepsDollarQuotedBodiesWhole() {
        let script = """
            CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM 1; RETURN 2;
            END
            $$;
            CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT 'x;$$;y' $body$;
            SELECT $1::int;
            """
        let statements = SQLScript.split(script)
        #expect(statements.count == 3)
        #expect(statements[0].hasSuffix("END\n$$"))
        #expect(statements[1] == "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT 'x;$$;y' $body$")
        #expect(statements[2] == "SELECT $1::int")
    }

    @Test func ignoresCommentsAndTheirSemicolons() {
        let script = """
            -- a comment; with a semicolon
            SELECT 1; -- trailing; comment
            /* block; /* nested; */ still comment; */
            SELECT 2;
            -- only a comment at the end;
            """
        let statements = SQLScript.split(script)
        #expect(statements.count == 2)
        #expect(statements[0].hasSuffix("SELECT 1"))
        #expect(statements[1].hasSuffix("SELECT 2"))
    }

    @Test func emptyScriptHasNoStatements() {
        #expect(SQLScript.split("  \n -- nothing\n ;; ").isEmpty)
    }
}
