// The package ships types that NodeNext resolution cannot reach through its "exports" map; this is the
// one part jobd uses. It is the parser the MongoDB driver itself uses for connection strings.
declare module 'mongodb-connection-string-url' {
  export class ConnectionString {
    /** Throws (MongoParseError) for a string the driver would refuse to parse. */
    constructor(uri: string);
    readonly hosts: string[];
    readonly isSRV: boolean;
  }
}
