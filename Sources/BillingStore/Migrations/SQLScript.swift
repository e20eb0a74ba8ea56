import Foundation

/// Splits a SQL file into statements. PostgresNIO sends one statement per call, and migration files hold many,
/// including function bodies in `$$` or `$tag$` quotes that contain `;`.
public enum SQLScript {
    public static func split(_ script: String) -> [String] {
        var statements: [String] = []
        var current = ""
        // Whether `current` holds anything but comments and whitespace.
        var hasCode = false
        let characters = Array(script.unicodeScalars)
        var index = 0

        func flush() {
            if hasCode { statements.append(current.trimmingCharacters(in: .whitespacesAndNewlines)) }
            current = ""
            hasCode = false
        }

        while index < characters.count {
            let character = characters[index]
            let next = index + 1 < characters.count ? characters[index + 1] : nil
            if !(character == "-" && next == "-") && !(character == "/" && next == "*") && character != ";"
                && !character.properties.isWhitespace
            {
                hasCode = true
            }
            switch character {
            case "-" where next == "-":
                // Line comment: up to the end of the line.
                while index < characters.count && characters[index] != "\n" {
                    current.unicodeScalars.append(characters[index])
                    index += 1
                }
                continue
            case "/" where next == "*":
                // Block comments nest in PostgreSQL.
                var depth = 0
                repeat {
                    if characters[index] == "/", index + 1 < characters.count, characters[index + 1] == "*" {
                        depth += 1
                        current += "/*"
                        index += 2
                    } else if characters[index] == "*", index + 1 < characters.count, characters[index + 1] == "/" {
                        depth -= 1
                        current += "*/"
                        index += 2
                    } else {
                        current.unicodeScalars.append(characters[index])
                        index += 1
                    }
                } while depth > 0 && index < characters.count
                continue
            case "'", "\"":
                // Quoted literal or identifier; a doubled quote is an escaped quote and keeps us inside.
                current.unicodeScalars.append(character)
                index += 1
                while index < characters.count {
                    current.unicodeScalars.append(characters[index])
                    if characters[index] == character {
                        if index + 1 < characters.count && characters[index + 1] == character {
                            current.unicodeScalars.append(characters[index + 1])
                            index += 2
                            continue
                        }
                        index += 1
                        break
                    }
                    index += 1
                }
                continue
            case "$":
                if let tag = dollarTag(characters, at: index) {
                    // Dollar-quoted body: copy through the matching closing tag.
                    let tagScalars = Array(tag.unicodeScalars)
                    current += tag
                    index += tagScalars.count
                    while index < characters.count {
                        if characters[index] == "$", matches(characters, at: index, tagScalars) {
                            current += tag
                            index += tagScalars.count
                            break
                        }
                        current.unicodeScalars.append(characters[index])
                        index += 1
                    }
                    continue
                }
            case ";":
                flush()
                index += 1
                continue
            default:
                break
            }
            current.unicodeScalars.append(character)
            index += 1
        }
        flush()
        return statements
    }

    /// `$$` or `$tag$` starting at `index`, where a tag is an identifier (not `$1`, a parameter).
    static func dollarTag(_ characters: [Unicode.Scalar], at index: Int) -> String? {
        var end = index + 1
        while end < characters.count, characters[end] != "$" {
            let scalar = characters[end]
            let isIdentifier = scalar == "_" || scalar.properties.isAlphabetic || (end > index + 1 && ("0"..."9").contains(scalar))
            guard isIdentifier else { return nil }
            end += 1
        }
        guard end < characters.count else { return nil }
        return String(String.UnicodeScalarView(characters[index...end]))
    }

    static func matches(_ characters: [Unicode.Scalar], at index: Int, _ tag: [Unicode.Scalar]) -> Bool {
        guard index + tag.count <= characters.count else { return false }
        return Array(characters[index..<index + tag.count]) == tag
    }
}
